"""Authenticated gateway commands (e.g. `offers.reload`): pure validation, no I/O.

Each command's own fields and effect live with its domain (offers: core/offers/reload.py).

Wire format on `{prefix}/v1/{store}/{gateway}/commands/{name}` (QoS 1, not retained): the
command's JSON text sealed with AES-256-GCM under a key derived from offers.command_key and
bound to `{name}/{store}/{gateway}` (core/sealed.py: `PGS1 || nonce || ciphertext+tag`). The
tag covers the raw bytes, so nothing is parsed before it verifies. The body is a JSON object:

    {"command": "offers.reload", "target": "<store>/<gateway>", "id": "<8..64 chars>",
     "issued_at": <Unix seconds, integer>, ...command fields (offers.reload: "version",
     "rules": the YAML text)}

Invariants:
- Nothing in a message is parsed before its tag verifies (size cap first); a gateway
  without a configured key refuses every command.
- A command is accepted once: for `command`/`target` matching the topic, `issued_at` within
  `max_age_s` in the past and `max_skew_s` in the future of the gateway's `now`, and an `id` not
  seen before. Ids are remembered for the acceptance window (older ones are stale anyway), so
  a captured message cannot be replayed, on this gateway or another.
- `check` never raises on untrusted bytes: it returns a `Command` or a `CommandRejected` with a
  stable reason code and a sentence for the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from presence_gateway.core.events import CommandOutcome, CommandRefused, CommandResult
from presence_gateway.core.sealed import Opened, seal

_MAX_PAYLOAD = 1 << 20   # 1 MiB: a rules file is a few KB; refuse to open anything huge
PURPOSE = "gateway-command/1"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    id: str
    issued_at: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CommandRejected:
    reason: str              # not_configured, malformed, bad_signature, wrong_command,
    detail: str              # wrong_target, stale, future, duplicate, invalid
    id: str | None = None


def sign(key: bytes, body: Mapping[str, Any]) -> bytes:
    """The sealed MQTT payload for a command body (what central, tests and tools send); it is
    bound to the body's own `command` and `target`."""
    text = orjson.dumps(dict(body))
    return seal(key, PURPOSE, f"{body.get('command')}/{body.get('target')}", text)


class CommandGuard:
    def __init__(self, key: bytes, *, store_id: str, gateway_id: str, max_age_s: float = 300.0,
                 max_skew_s: float = 60.0) -> None:
        self._opener = Opened(key, PURPOSE, max_size=_MAX_PAYLOAD)
        self._key = bool(key)
        self.target = f"{store_id}/{gateway_id}"
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self._seen: dict[str, int] = {}   # id -> issued_at, for the acceptance window

    def __repr__(self) -> str:   # never show the key
        return f"CommandGuard(target={self.target!r}, remembered={len(self._seen)})"

    def check(self, name: str, payload: bytes, now: float) -> Command | CommandRejected:
        if not self._key:
            return CommandRejected("not_configured", "no command key is configured")
        opened = self._opener.open(payload, f"{name}/{self.target}")
        if isinstance(opened, tuple):
            reason, detail = opened
            code = {"unauthenticated": "bad_signature", "too_large": "malformed"}.get(reason,
                                                                                     reason)
            return CommandRejected(code, detail)
        body = _json_object(opened)
        if body is None:
            return CommandRejected("malformed", "the signed body is not a JSON object")
        return self._admit(name, body, now)

    def _admit(self, name: str, body: dict[str, Any], now: float) -> Command | CommandRejected:
        cid, issued = body.get("id"), body.get("issued_at")
        if not (isinstance(cid, str) and 8 <= len(cid) <= 64) or not isinstance(issued, int) \
                or isinstance(issued, bool):
            return CommandRejected("malformed", "id (8..64 chars) and integer issued_at needed")
        if body.get("command") != name:
            return CommandRejected("wrong_command", f"body is not a {name} command", cid)
        if body.get("target") != self.target:
            return CommandRejected("wrong_target", f"not addressed to {self.target}", cid)
        if issued < now - self.max_age_s:
            return CommandRejected("stale", f"issued {now - issued:.0f}s ago", cid)
        if issued > now + self.max_skew_s:
            return CommandRejected("future", f"issued {issued - now:.0f}s in the future", cid)
        if cid in self._seen:
            return CommandRejected("duplicate", "this command id was already accepted", cid)
        self._forget_before(now - self.max_age_s)
        self._seen[cid] = issued
        return Command(name=name, id=cid, issued_at=issued, body=body)

    def _forget_before(self, horizon: float) -> None:
        for old in [k for k, t in self._seen.items() if t < horizon]:
            del self._seen[old]


def result_event(name: str, now: float, *, command_id: str | None, ok: bool,
                 version: str = "", rules: int = 0, errors: tuple[str, ...] = (),
                 reason: str = "") -> CommandOutcome:
    """What goes on `.../commands/{name}/result` (the shell publishes it, QoS 1).

    `errors` are the rules file's messages (file:line key (rule id): message) when a reload was
    refused; `reason` is a guard rejection code. The old rules keep running unless `ok`.
    """
    cls = CommandRefused if reason else CommandResult
    return cls(time=now, command=name, command_id=command_id, ok=ok, version=version,
               rules=rules, errors=errors, reason=reason)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)  # depth-limited: never a RecursionError
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
