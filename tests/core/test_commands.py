"""Sealed commands: AEAD over the raw bytes, target, freshness, replay; offers.reload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.commands import (
    PURPOSE,
    Command,
    CommandGuard,
    CommandRejected,
    sign,
)
from presence_gateway.core.events import EventType
from presence_gateway.core.offers.engine import OfferEngine
from presence_gateway.core.offers.reload import (
    OFFERS_RELOAD,
    ReloadRequest,
    reload_offers,
    reload_request,
)
from presence_gateway.core.offers.rules import EMPTY_RULES
from presence_gateway.core.sealed import seal
from tests.fuzzing import budget

RESULT_TYPE, REJECTED_TYPE = EventType.COMMAND_RESULT, EventType.COMMAND_REJECTED

KEY = b"0123456789abcdef-test-key"
NOW = 1_750_000_000.0
GOOD_RULES = "version: v2\noffers:\n  - id: a\n    description: d\n    when: {zone: cafe}\n"


def body(**over: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"command": OFFERS_RELOAD, "target": "s1/gw1", "id": "cmd-00000001",
                         "issued_at": int(NOW) - 5, "version": "v2", "rules": GOOD_RULES}
    b.update(over)
    return b


def guard(key: bytes = KEY) -> CommandGuard:
    return CommandGuard(key, store_id="s1", gateway_id="gw1")


def test_a_signed_reload_is_accepted_once() -> None:
    g = guard()
    payload = sign(KEY, body())
    cmd = g.check(OFFERS_RELOAD, payload, NOW)
    assert isinstance(cmd, Command) and cmd.id == "cmd-00000001"
    req = reload_request(cmd)
    assert isinstance(req, ReloadRequest) and req.rules_text == GOOD_RULES
    again = g.check(OFFERS_RELOAD, payload, NOW + 1)
    assert isinstance(again, CommandRejected) and again.reason == "duplicate"
    assert "KEY" not in repr(g) and KEY.decode() not in repr(g)


def tamper(payload: bytes) -> bytes:
    return payload[:-20] + bytes([payload[-20] ^ 1]) + payload[-19:]


def sealed_for_gw1(b: dict[str, Any]) -> bytes:
    """Authentic for this gateway's topic, whatever the body says inside."""
    return seal(KEY, PURPOSE, f"{OFFERS_RELOAD}/s1/gw1", json.dumps(b).encode())


@pytest.mark.parametrize(("payload", "reason"), [
    (sign(b"another-key-0123456789", body()), "bad_signature"),
    (tamper(sign(KEY, body())), "bad_signature"),
    (sign(KEY, body(target="s1/gw2")), "bad_signature"),  # sealed for another gateway
    (b"\xff\xfe not json", "malformed"),
    (b'{"body": 1, "hmac": "\xc3\xa9"}', "malformed"),
    (b"[]", "malformed"),
    (b"x" * (1 << 21), "malformed"),
    (seal(KEY, PURPOSE, f"{OFFERS_RELOAD}/s1/gw1", b"[" * 100_000), "malformed"),
    (sign(KEY, body(id="short")), "malformed"),
    (sign(KEY, body(issued_at=str(int(NOW)))), "malformed"),
    (sealed_for_gw1(body(command="identity.sync")), "wrong_command"),
    (sealed_for_gw1(body(target="s1/gw2")), "wrong_target"),
    (sign(KEY, body(issued_at=int(NOW) - 301)), "stale"),
    (sign(KEY, body(issued_at=int(NOW) + 61)), "future"),
])
def test_rejections(payload: bytes, reason: str) -> None:
    out = guard().check(OFFERS_RELOAD, payload, NOW)
    assert isinstance(out, CommandRejected) and out.reason == reason


@budget(3000)
@given(st.binary(max_size=300))
def test_no_payload_raises(data: bytes) -> None:
    assert isinstance(guard().check(OFFERS_RELOAD, data, NOW), CommandRejected)
    assert isinstance(guard().check(OFFERS_RELOAD, b"PGS1" + data, NOW), CommandRejected)


def test_without_a_key_every_command_is_refused() -> None:
    out = guard(b"").check(OFFERS_RELOAD, sign(b"", body()), NOW)
    assert isinstance(out, CommandRejected) and out.reason == "not_configured"


def test_reload_request_needs_rules_text() -> None:
    cmd = guard().check(OFFERS_RELOAD, sign(KEY, body(rules=None)), NOW)
    assert isinstance(cmd, Command)
    out = reload_request(cmd)
    assert isinstance(out, CommandRejected) and out.reason == "invalid"


def test_reload_swaps_only_a_valid_rule_set() -> None:
    engine = OfferEngine(EMPTY_RULES, timezone="UTC", store_id="s1")
    ok, ev = reload_offers(engine, GOOD_RULES, source="cmd", zones={"cafe"}, now=NOW,
                           command_id="cmd-00000001")
    assert ok and engine.rules.version == "v2"
    assert ev.type == RESULT_TYPE and ev.topic_suffix == "commands/offers.reload/result"
    assert ev.data == {"command": "offers.reload", "id": "cmd-00000001", "ok": True,
                       "time": NOW, "version": "v2", "rules": 1}
    bad = GOOD_RULES.replace("cafe", "shoez") + "  - id: a\n    description: again\n"
    ok, ev = reload_offers(engine, bad, source="cmd", zones={"cafe"}, now=NOW,
                           command_id="cmd-00000002", version="v3")
    assert not ok and engine.rules.version == "v2"  # the old rules keep running
    assert ev.data["ok"] is False and ev.data["version"] == "v3"
    assert ev.data["errors"] == [
        'cmd:5 offers[0].when.zone (a): unknown zone "shoez" (known zones: cafe)',
        'cmd:6 offers[1].id (a): duplicate id "a" (first used at offers[0], line 3)']
    assert REJECTED_TYPE != RESULT_TYPE
