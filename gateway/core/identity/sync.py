"""Identity sync over MQTT: authenticate and validate a snapshot or update, or reject it.

Topics (store level, every gateway of the store subscribes):
  `{prefix}/v1/{store}/identity/snapshot`  retained: the full registry and opt-out list
  `{prefix}/v1/{store}/identity/updates`   incremental upserts and deletions
The payload is the body's JSON text sealed with AES-256-GCM under a key derived from
identity.sync_key and bound to the topic's kind and store (core/sealed.py): IRKs and beacon
keys never cross the broker in clear, and nothing is parsed before the tag verifies.
docs/identity.md documents the body schema.

Invariants:
- Pure: bytes + current version in, a `SyncChange` (to apply), a `SyncIgnored` (a duplicate,
  e.g. the retained snapshot again after a reconnect) or a `SyncRejected` (reason code and a
  detail for logs) out. Never raises on a payload; nothing is applied unless all of it is valid.
- Order: a snapshot is applied when its version is above the current one; an update only when
  its version is exactly current + 1. Lower versions are `stale`, gaps are `out_of_order`.
- The size cap, then the AEAD tag over the raw bytes, are checked before anything is parsed;
  the body is parsed depth-limited (orjson); no rejection detail quotes a value: secrets and
  addresses never reach a log or an event.
- Beacon ids, MACs and opt-out addresses are hashed here (same keyed domains as the import);
  a `SyncChange` holds no raw identifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from presence_gateway.core.events import InboundRejected
from presence_gateway.core.identity.importer import entry_from_fields
from presence_gateway.core.identity.index import Entry, Hasher
from presence_gateway.core.privacy import parse_mac
from presence_gateway.core.sealed import Opened, seal

FORMAT = "presence-gateway/identity-sync/1"
SNAPSHOT, UPDATE = "snapshot", "update"
MAX_PAYLOAD = 16 * 1024 * 1024
PURPOSE = "identity-sync/1"
_HASH = re.compile(r"[0-9a-f]{32}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_CUSTOMER = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
_KEYS = {
    SNAPSHOT: ({"format", "type", "store", "version", "entries", "opt_out"},
               {"entries", "opt_out"}),
    UPDATE: ({"format", "type", "store", "version", "upsert", "delete_entries",
              "delete_customers", "opt_out_add", "opt_out_remove"}, set()),
}


@dataclass(frozen=True, slots=True)
class SyncChange:
    """A validated change. A snapshot replaces the synced entries and the whole opt-out list."""

    type: str
    version: int
    upsert: tuple[Entry, ...] = ()
    delete_entries: tuple[str, ...] = ()
    delete_customers: tuple[str, ...] = ()
    opt_out_add: frozenset[str] = frozenset()
    opt_out_remove: frozenset[str] = frozenset()

    @property
    def replace(self) -> bool:
        return self.type == SNAPSHOT


@dataclass(frozen=True, slots=True)
class SyncIgnored:
    version: int
    reason: str = "duplicate"


@dataclass(frozen=True, slots=True)
class SyncRejected:
    command: str  # identity.snapshot / identity.update
    reason: str  # too_large, not_json, no_key, unauthenticated, invalid, wrong_store, stale, ...
    detail: str
    version: int | None = None


SyncResult = SyncChange | SyncIgnored | SyncRejected


def topics(prefix: str, store: str) -> tuple[str, str]:
    base = f"{prefix}/v1/{store}/identity"
    return f"{base}/snapshot", f"{base}/updates"


def aad(kind: str, store: str) -> str:
    """What a sealed sync message is bound to: its kind and the store it is for."""
    return f"identity.{kind}/{store}"


def sign(body: bytes, key: bytes) -> bytes:
    """The sealed payload central publishes for `body` (also used by tests and tools); the
    kind and store it is bound to are read from the body itself."""
    head = orjson.loads(body)
    return seal(key, PURPOSE, aad(str(head["type"]), str(head["store"])), body)


def open_signed(payload: bytes, key: bytes, command: str, *, kind: str,
                store: str) -> dict[str, Any] | SyncRejected:
    """Verify the seal over the raw bytes (size first), then parse the authenticated body."""
    opened = Opened(key, PURPOSE, max_size=MAX_PAYLOAD).open(payload, aad(kind, store))
    if isinstance(opened, tuple):
        reason, detail = opened
        return SyncRejected(command, "invalid" if reason == "malformed" else reason, detail)
    try:
        inner = orjson.loads(opened)  # depth-limited: never a RecursionError
    except orjson.JSONDecodeError:
        return SyncRejected(command, "not_json", "the body is not JSON")
    if not isinstance(inner, dict):
        return SyncRejected(command, "invalid", "the body must be a JSON object")
    return inner


def check(payload: bytes, *, kind: str, store: str, key: bytes, current_version: int,
          hasher: Hasher) -> SyncResult:
    """Authenticate and validate one message received on the `kind` topic (snapshot/update)."""
    command = f"identity.{kind}"
    body = open_signed(payload, key, command, kind=kind, store=store)
    if isinstance(body, SyncRejected):
        return body
    head = _header(body, kind, store, command)
    if isinstance(head, SyncRejected):
        return head
    version = head
    change = _change(body, kind, version, hasher)  # validated whole, duplicates included
    if isinstance(change, str):
        return SyncRejected(command, "invalid", change, version)
    if version == current_version:
        return SyncIgnored(version)
    if version < current_version:
        return SyncRejected(command, "stale", f"version {version} < current {current_version}",
                            version)
    if kind == UPDATE and version != current_version + 1:
        return SyncRejected(command, "out_of_order",
                            f"expected version {current_version + 1}, got {version}", version)
    return change


def _header(body: Mapping[str, Any], kind: str, store: str, command: str) -> int | SyncRejected:
    allowed, required = _KEYS[kind]
    problems = [f"unknown key {k!r}" for k in sorted(set(body) - allowed)]
    problems += [f"missing key {k!r}" for k in sorted(required - set(body))]
    if body.get("format") != FORMAT:
        problems.append(f"format must be {FORMAT!r}")
    if body.get("type") != kind:
        problems.append(f"type must be {kind!r} on this topic")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**53:
        problems.append("version must be an integer >= 1")
        version = None
    if problems:
        return SyncRejected(command, "invalid", "; ".join(problems), version)
    if body.get("store") != store:
        return SyncRejected(command, "wrong_store", "the message is for another store", version)
    assert isinstance(version, int)
    return version


def _change(body: Mapping[str, Any], kind: str, version: int, hasher: Hasher) -> SyncChange | str:
    errors: list[str] = []
    entries_key = "entries" if kind == SNAPSHOT else "upsert"
    entries = _entries(body.get(entries_key, []), entries_key, hasher, errors)
    deletes = _ids(body.get("delete_entries", []), "delete_entries", _ID, errors)
    customers = _ids(body.get("delete_customers", []), "delete_customers", _CUSTOMER, errors)
    add_key = "opt_out" if kind == SNAPSHOT else "opt_out_add"
    add = _opt_out(body.get(add_key, []), add_key, hasher, errors)
    remove = _opt_out(body.get("opt_out_remove", []), "opt_out_remove", hasher, errors)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return "; ".join(errors[:5]) + more
    return SyncChange(kind, version, entries, deletes, customers, add, remove)


def _entries(items: object, where: str, hasher: Hasher, errors: list[str]) -> tuple[Entry, ...]:
    if not isinstance(items, list):
        errors.append(f"{where} must be a list")
        return ()
    out: list[Entry] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"{where}[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{path} must be an object")
            continue
        if not isinstance(item.get("id"), str):
            errors.append(f"{path}.id is required (the central entry id)")
            continue
        unknown = sorted(set(item) - {"id", "customer_id", "kind", "value", "consent",
                                      "segments", "expires"})
        if unknown:
            errors.append(f"{path}.{unknown[0]}: unknown key")
            continue

        def err(col: str, msg: str, path: str = path) -> None:
            errors.append(f"{path}.{col}: {msg}")

        entry = entry_from_fields(item, hasher, err)
        if entry is not None:
            if entry.entry_id in seen:
                err("id", "the same id twice")
            seen.add(entry.entry_id)
            out.append(entry)
    return tuple(out)


def _ids(items: object, where: str, pattern: re.Pattern[str], errors: list[str]) -> tuple[str, ...]:
    if not isinstance(items, list) or not all(
            isinstance(x, str) and pattern.fullmatch(x) for x in items):
        errors.append(f"{where} must be a list of ids")
        return ()
    return tuple(items)


def _opt_out(items: object, where: str, hasher: Hasher, errors: list[str]) -> frozenset[str]:
    """MAC addresses (hashed here) or 32-hex keyed hashes computed with the store secret."""
    if not isinstance(items, list):
        errors.append(f"{where} must be a list")
        return frozenset()
    out: set[str] = set()
    for i, item in enumerate(items):
        text = item.strip().lower() if isinstance(item, str) else ""
        mac = parse_mac(text) if len(text) in (12, 17) else None
        if mac is not None:
            out.add(hasher(mac, "address"))
        elif _HASH.fullmatch(text):
            out.add(text)
        else:
            errors.append(f"{where}[{i}]: expected a MAC address or a 32-hex-digit hash")
    return frozenset(out)


def rejection_event(r: SyncRejected, now: float, topic: str) -> InboundRejected:
    """The `presence.command.rejected` event the shell publishes for a refused message."""
    return InboundRejected(time=now, command=r.command, reason=r.reason, detail=r.detail,
                           version=r.version, topic=topic)
