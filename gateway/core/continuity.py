"""Restarts keep the day: the presence state (open visits, zone state, the day's footfall
counters, the pipeline's clock) frozen into bytes and thawed into a new gateway.

Invariants:
- Pure: bytes in, bytes out; the shell stores them (adapters/snapshot_store.py).
- Authenticated before it is read: the blob is `MAGIC | HMAC-SHA256(key, body) | body` and
  nothing is unpickled unless the tag verifies under a key derived from the store's privacy
  secret, so only a gateway of this store can have written it (pickle is never fed bytes
  that anyone else could have made). A bad tag, a damaged body or another format give a
  reason, and the gateway starts fresh: never a crash.
- Other presence settings, or a snapshot older than `max_age_s`, do not carry the day (its
  units and counters were made under other rules, or are stale) but do carry what was learnt
  of the sensors (`Thawed.day` False): each Wi-Fi sensor's placement offset and a recording's
  channel plans belong to the radios, and a gateway that lost them would count cautiously
  again until a busy window re-teaches them (docs/presence.md "A sensor not learnt yet").
- What is frozen holds device keys (keyed pseudonyms) and counters only, as the engine does in
  memory: no raw address, SSID or identity key. The identity links and offer marks are not
  frozen: they are re-derived from the registry and the offer ledger.
- Old state is not special-cased: thawed visits end at their last sighting plus the visit
  timeout at the first tick, and a new day resets the day's counters, exactly as if the
  gateway had never stopped. `max_age_s` only bounds how stale a snapshot may be at all.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from dataclasses import dataclass
from typing import Any

from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.visit_gate import VisitGate

MAGIC = b"PGC1"
_TAG = 32


def snapshot_key(secret: bytes) -> bytes:
    """A key of its own for snapshots (never the pseudonymisation key itself)."""
    return hmac.new(secret, b"presence-gateway continuity v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Thawed:
    taken_at: float
    engine: PresenceEngine
    clock: dict[str, Any]
    day: bool = True  # False: only what was learnt of the sensors carries over (`why` says why)
    why: str = ""


def freeze(pipeline: Pipeline, engine: PresenceEngine, *, taken_at: float, key: bytes) -> bytes:
    clock: dict[str, Any] = {"last_ts": pipeline.last_ts, "max_ts": pipeline.max_ts,
                             "next_stats": pipeline.next_stats, "next_tick": pipeline.next_tick}
    if isinstance(pipeline.gate, VisitGate):  # visits held until classified go along
        clock["gate"] = pipeline.gate.freeze()
    body = pickle.dumps({"taken_at": taken_at, "engine": engine, "clock": clock},
                        protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + hmac.new(key, MAGIC + body, hashlib.sha256).digest() + body


def thaw(blob: bytes, *, key: bytes, engine: PresenceEngine, now: float | None,
         max_age_s: float) -> Thawed | str:
    """The state in `blob`, or why it cannot be used at all. `engine` is the new gateway's:
    with other settings, or older than `max_age_s`, only the sensors' learnt state is used
    (`day` False); `now` None skips the age check (capture time)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _TAG:
        return "not a snapshot of this version"
    tag, body = blob[len(MAGIC):len(MAGIC) + _TAG], blob[len(MAGIC) + _TAG:]
    if not hmac.compare_digest(tag, hmac.new(key, MAGIC + body, hashlib.sha256).digest()):
        return "written under another privacy secret (or damaged)"
    try:
        data = pickle.loads(body)  # authenticated above: written by this store's gateway
    except Exception as exc:  # a damaged body of a valid tag: a bug, not an attack
        return f"unreadable ({type(exc).__name__})"
    old = data.get("engine") if isinstance(data, dict) else None
    if not isinstance(old, PresenceEngine) or not isinstance(data.get("clock"), dict):
        return "unreadable (unexpected contents)"
    if (old.gateway_id, old.store_id) != (engine.gateway_id, engine.store_id):
        return "taken by another gateway or store"
    taken = float(data.get("taken_at", 0.0))
    why = ""
    if old.s != engine.s:
        why = "the presence settings changed since it was taken"
    elif now is not None and not 0 <= now - taken <= max_age_s:
        why = f"too old ({now - taken:.0f} s; the limit is {max_age_s:.0f} s)"
    return Thawed(taken, old, data["clock"], day=not why, why=why)


def adopt(pipeline: Pipeline, engine: PresenceEngine, thawed: Thawed) -> None:
    """Move the thawed state into the running engine and pipeline (they keep their identity:
    the core's other parts hold references to them); not `day`: the sensors' state only."""
    engine.adopt(thawed.engine, day=thawed.day)
    if not thawed.day:
        return
    c = thawed.clock
    pipeline.resume_clock(last_ts=c.get("last_ts"), max_ts=c.get("max_ts"),
                          next_stats=c.get("next_stats"), next_tick=c.get("next_tick"))
    # Held visits of a gateway that published only visitors: kept if this one does too (a
    # gateway switched to `all` publishes its visits from the next event on).
    if isinstance(pipeline.gate, VisitGate) and "gate" in c:
        pipeline.gate.adopt(c["gate"])
