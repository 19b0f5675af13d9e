"""Identity sync messages: AEAD seal, versions (stale, duplicate, out of order), schema errors."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.identity.config import IdentitySettings, read
from presence_gateway.core.identity.sync import (
    FORMAT,
    SyncChange,
    SyncIgnored,
    SyncRejected,
    check,
    rejection_event,
    sign,
    topics,
)
from presence_gateway.core.privacy import Pseudonymizer
from presence_gateway.core.yamlread import Reader, load_yaml
from presence_gateway.errors import ConfigError
from tests.fuzzing import budget

KEY = b"sync-key-for-tests-0123456789"
P = Pseudonymizer(b"store-secret-0123456789abcdef")
IRK_HEX = "ec0234a357c8ad05341010a60a397d9b"
MAC = "3c:22:fb:12:34:56"


def body(kind: str = "snapshot", version: Any = 5, **extra: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"format": FORMAT, "type": kind, "store": "store-1", "version": version}
    if kind == "snapshot":
        b |= {"entries": [{"id": "c1-irk", "customer_id": "c1", "kind": "irk",
                           "value": IRK_HEX, "consent": ["personalization", "offers"],
                           "segments": {"tier": "gold"}, "expires": None}],
              "opt_out": [MAC]}
    return b | extra


def payload(b: dict[str, Any], key: bytes = KEY) -> bytes:
    return sign(json.dumps(b).encode(), key)


def run(p: bytes, kind: str = "snapshot", current: int = 0) -> Any:
    return check(p, kind=kind, store="store-1", key=KEY, current_version=current,
                 hasher=P.stable_hash)


def test_signed_snapshot_is_accepted_and_hashes_addresses() -> None:
    result = run(payload(body()))
    assert isinstance(result, SyncChange) and result.replace and result.version == 5
    (entry,) = result.upsert
    assert entry.entry_id == "c1-irk" and entry.customer_id == "c1"
    assert entry.material == IRK_HEX and dict(entry.segments) == {"tier": "gold"}
    assert result.opt_out_add == {P.stable_hash(bytes.fromhex("3c22fb123456"), "address")}
    assert MAC not in repr(result) and "3c22fb123456" not in repr(result)


def independent_seal(text: bytes, aad: bytes) -> bytes:
    """The documented format built from the primitives, not from the gateway's code."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"presence-gateway/identity-sync/1").derive(KEY)
    nonce = os.urandom(12)
    return b"PGS1" + nonce + AESGCM(key).encrypt(nonce, text, aad)


def test_seal_matches_an_independent_computation_and_hides_the_body() -> None:
    text = json.dumps(body(), indent=2).encode()  # any formatting: the tag covers the bytes
    assert isinstance(run(independent_seal(text, b"identity.snapshot/store-1")), SyncChange)
    # bound to kind and store: the same seal is refused on the updates topic or another store
    sealed = independent_seal(text, b"identity.snapshot/store-1")
    assert run(sealed, "update").reason == "unauthenticated"
    assert check(sealed, kind="snapshot", store="store-2", key=KEY, current_version=0,
                 hasher=P.stable_hash).reason == "unauthenticated"
    # a subscriber without the key sees no IRK, customer id or address
    for secret in (IRK_HEX.encode(), b"c1-irk", MAC.encode(), b"gold", bytes.fromhex(IRK_HEX)):
        assert secret not in sealed
    assert len(sealed) == 4 + 12 + len(text) + 16  # only the size shows


def flip(p: bytes, at: int) -> bytes:
    return p[:at] + bytes([p[at] ^ 1]) + p[at + 1:]


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda p: flip(p, len(p) - 20), "unauthenticated"),
    (lambda p: flip(p, 6), "unauthenticated"),  # the nonce
    (lambda p: payload(body(), key=b"another-key-0123456789"), "unauthenticated"),
    (lambda p: json.dumps({"body": "{}", "hmac": "00" * 32}).encode(), "invalid"),
    (lambda p: b"\xff\xfe garbage", "invalid"),
    (lambda p: b"[" * 100_000, "invalid"),
    (lambda p: b"x" * (16 * 1024 * 1024 + 1), "too_large"),
])
def test_bad_or_unauthenticated_payloads_change_nothing(mutate: Any, reason: str) -> None:
    original = payload(body())
    changed = mutate(original)
    assert changed != original
    result = run(changed)
    assert isinstance(result, SyncRejected) and result.reason == reason


def test_a_deep_or_odd_body_is_rejected_after_authentication_without_raising() -> None:
    sealed = independent_seal(b"[" * 100_000 + b"]" * 100_000, b"identity.snapshot/store-1")
    assert run(sealed).reason == "not_json"  # orjson's depth limit, not a RecursionError
    odd = independent_seal('{"format": "\u00e9"}'.encode(), b"identity.snapshot/store-1")
    assert run(odd).reason == "invalid"


@budget(3000)
@given(st.binary(max_size=300))
def test_no_payload_raises(data: bytes) -> None:
    assert isinstance(run(data), SyncRejected)
    assert isinstance(run(b"PGS1" + data), SyncRejected)


def test_no_key_configured_rejects_everything() -> None:
    result = check(payload(body()), kind="snapshot", store="store-1", key=b"",
                   current_version=0, hasher=P.stable_hash)
    assert isinstance(result, SyncRejected) and result.reason == "no_key"


def test_versions_stale_duplicate_and_out_of_order() -> None:
    assert isinstance(run(payload(body(version=5)), current=5), SyncIgnored)  # retained again
    stale = run(payload(body(version=4)), current=5)
    assert isinstance(stale, SyncRejected) and stale.reason == "stale" and stale.version == 4
    upd = body("update", 7, delete_customers=["c9"])
    gap = run(payload(upd), "update", current=5)
    assert isinstance(gap, SyncRejected) and gap.reason == "out_of_order"
    assert gap.detail == "expected version 6, got 7"
    ok = run(payload(upd), "update", current=6)
    assert isinstance(ok, SyncChange) and not ok.replace and ok.delete_customers == ("c9",)
    old = run(payload(body("update", 3)), "update", current=6)
    assert isinstance(old, SyncRejected) and old.reason == "stale"
    newer_snapshot = run(payload(body(version=50)), current=6)  # a snapshot may jump ahead
    assert isinstance(newer_snapshot, SyncChange)


def test_update_with_every_field() -> None:
    upd = body("update", 2, upsert=[{"id": "x", "customer_id": "c2", "kind": "wifi_mac",
                                     "value": MAC, "consent": "analytics"}],
               delete_entries=["c1-irk"], delete_customers=["c3"],
               opt_out_add=["0123456789abcdef0123456789abcdef"], opt_out_remove=[MAC])
    result = run(payload(upd), "update", current=1)
    assert isinstance(result, SyncChange)
    assert [e.entry_id for e in result.upsert] == ["x"]
    assert result.delete_entries == ("c1-irk",)
    assert result.opt_out_add == {"0123456789abcdef0123456789abcdef"}
    assert len(result.opt_out_remove) == 1


@pytest.mark.parametrize(("b", "kind", "reason", "detail"), [
    (body(format="v0"), "snapshot", "invalid", "format must be"),
    (body("update", 6), "snapshot", "invalid", "type must be 'snapshot' on this topic"),
    (body(version="6"), "snapshot", "invalid", "version must be an integer"),
    (body(version=True), "snapshot", "invalid", "version must be an integer"),
    (body(colour=1), "snapshot", "invalid", "unknown key 'colour'"),
    ({k: v for k, v in body().items() if k != "opt_out"}, "snapshot", "invalid",
     "missing key 'opt_out'"),
    (body(store="store-2"), "snapshot", "wrong_store", "another store"),
    (body(entries=[{"customer_id": "c", "kind": "irk", "value": IRK_HEX, "consent": ""}]),
     "snapshot", "invalid", "entries[0].id is required"),
    (body(entries=[{"id": "a", "customer_id": "c", "kind": "irk", "value": "00",
                    "consent": "offers"}]), "snapshot", "invalid", "entries[0].value: "),
    (body(entries=[{"id": "a", "customer_id": "c", "kind": "irk", "value": IRK_HEX,
                    "consent": "marketing"}]), "snapshot", "invalid", "entries[0].consent"),
    (body(opt_out=["not-a-mac"]), "snapshot", "invalid", "opt_out[0]: expected a MAC"),
    (body("update", 6, delete_entries=[1]), "update", "invalid", "delete_entries must be"),
])
def test_schema_errors_are_rejected_with_a_reason(b: dict[str, Any], kind: str, reason: str,
                                                  detail: str) -> None:
    # sealed for the topic it arrives on (authentic), whatever the body claims
    sealed = independent_seal(json.dumps(b).encode(), f"identity.{kind}/store-1".encode())
    result = run(sealed, kind, current=5)
    assert isinstance(result, SyncRejected)
    assert (result.reason, result.command) == (reason, f"identity.{kind}")
    assert detail in result.detail


def test_rejection_details_never_quote_secret_values() -> None:
    bad = body(entries=[{"id": "a", "customer_id": "c", "kind": "eddystone_eid",
                         "value": IRK_HEX + "/99", "consent": "offers"}])
    result = run(payload(bad))
    assert isinstance(result, SyncRejected)
    ev = rejection_event(result, 100.0, "presence/v1/store-1/identity/snapshot")
    assert ev.type == "presence.command.rejected" and ev.data["reason"] == "invalid"
    assert IRK_HEX not in json.dumps(dict(ev.data))


def test_topics_and_config_section() -> None:
    assert topics("presence", "s1") == ("presence/v1/s1/identity/snapshot",
                                        "presence/v1/s1/identity/updates")
    text = ("identity:\n  sync_key: env:SYNC\n  app_token:\n"
            "    uuid: 2F234454CF6D4A0FADF2F4911BA9FFA6\n    window: 10m\n")
    data, lines = load_yaml(text, "gw.yaml")
    r = Reader("gw.yaml", data, lines)
    from presence_gateway.core.identity.config import env_or_file
    s = read(r, "identity", env_or_file({"SYNC": "k" * 20}))
    r.check()
    assert s == IdentitySettings(sync_key=b"k" * 20, app_uuid="2f234454-cf6d-4a0f-adf2-"
                                 "f4911ba9ffa6", app_window_s=600)
    assert "kkkk" not in repr(s)
    bad, lines = load_yaml("identity:\n  sync_key: env:SHORT\n  app_token: {tolerance: 99}\n",
                           "gw.yaml")
    r = Reader("gw.yaml", bad, lines)
    read(r, "identity", env_or_file({"SHORT": "x"}))
    with pytest.raises(Exception) as info:
        r.check()
    text_err = str(info.value)
    assert "gw.yaml:2 identity.sync_key: the key must be at least 16 characters" in text_err
    assert "gw.yaml:3 identity.app_token.tolerance: expected an integer 0..12" in text_err
    assert isinstance(info.value, ConfigError) or "\n" in text_err
