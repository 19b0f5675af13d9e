"""Central consumer, pure part: what a fleet message means and in which order it is applied.

Values in, values out; the shell (central/consumer.py) feeds messages and the clock and
commits what comes out. Invariants:
- A message is identified by its topic (store, gateway, kind) and, for events, by the
  CloudEvents `id` (dedupe) and the per-gateway `sequence` (order, gaps).
- Per gateway, events are released in `sequence` order: the next expected one is released at
  once (with any held ones that follow it); a later one is HELD until the hole fills. A hole
  still open after `gap_timeout_s` (or with more than `max_held` held behind it) is skipped:
  it becomes a `Gap`, the held events are released. One resend request per hole is emitted
  after `resend_after_s`, for the gateway's `events.resend` command.
- An event below the next expected sequence (a duplicate, or a late fill of a skipped hole) is
  released at once: the database decides by id whether it is new (idempotent writes).
- A gateway with nothing committed starts at its sequence 1 (a gateway's stream starts there).
  First seen later in its stream (central joined a running fleet, or the broker redelivers
  the beginning after a later event, as after a consumer's takeover), its events are held like
  a hole's and released after `gap_timeout_s` from the lowest seen, with no gap: what came
  before central first heard it is not a hole. Taking the first delivery as the start let a
  redelivered beginning land behind it (tests/fleet/test_fleet.py saw 113 applied before 1).
- Held events are only in memory and their broker deliveries are unacknowledged: the state
  of a partition is dropped with its connection (`Partition.reset`), and the broker
  redelivers them.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from presence_gateway.core.envelope import Topics

EVENT_TABLES = {
    "presence.visit.started": "visits", "presence.visit.ended": "visits",
    "presence.footfall": "footfall", "presence.occupancy": "occupancy",
    "presence.identity.linked": "links", "presence.offer.triggered": "offers",
}
RESEND_COMMAND = "events.resend"


@dataclass(frozen=True, slots=True)
class Address:
    store: str
    gateway: str
    kind: str  # "events", "state/...", "status", "commands/.../result"

    @property
    def key(self) -> str:
        return f"{self.store}/{self.gateway}"


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent as central stores it; `tag` is the broker delivery to acknowledge."""

    id: str
    store: str
    gateway: str
    seq: int
    type: str
    time: str
    subject: str | None
    data: Mapping[str, Any]
    tag: int = 0

    @property
    def key(self) -> str:
        return f"{self.store}/{self.gateway}"


@dataclass(frozen=True, slots=True)
class Status:
    store: str
    gateway: str
    state: str
    time: float | None


@dataclass(frozen=True, slots=True)
class Gap:
    """Sequence numbers `first..last` of a gateway skipped after the timeout."""

    store: str
    gateway: str
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """What the gateway's `events.resend` command takes: `{"from_sequence", "to_sequence"}`."""

    store: str
    gateway: str
    from_sequence: int
    to_sequence: int

    def topic(self, prefix: str, *, layout: str = "v2", partitions: int = 16) -> str:
        """Where the gateway listens: its own commands subtree, in the fleet's layout."""
        topics = Topics(prefix, self.store, self.gateway, layout=layout, partitions=partitions)
        return f"{topics.commands}/{RESEND_COMMAND}"

    def args(self) -> dict[str, int]:
        return {"from_sequence": self.from_sequence, "to_sequence": self.to_sequence}


def address(topic: str) -> Address | None:
    """`{prefix}/v2/{partition}/{store}/{gateway}/{kind...}` or the v1 `{prefix}/v1/{store}/
    {gateway}/{kind...}` -> Address; None for anything else. The prefix may have levels."""
    parts = topic.split("/")
    for i, token in enumerate(parts):
        if token == "v2" and len(parts) >= i + 5:
            return Address(parts[i + 2], parts[i + 3], "/".join(parts[i + 4:]))
        if token == "v1" and len(parts) >= i + 4:
            return Address(parts[i + 1], parts[i + 2], "/".join(parts[i + 3:]))
    return None


def parse(topic: str, payload: bytes, tag: int = 0) -> Event | Status | None:
    """A fleet message -> Event (a CloudEvent with id and sequence), Status, or None."""
    where = address(topic)
    if where is None:
        return None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    if where.kind == "status":
        state = body.get("state")
        return Status(where.store, where.gateway, state if isinstance(state, str) else "unknown",
                      _when(body.get("time")))
    eid, seq, etype = body.get("id"), body.get("sequence"), body.get("type")
    if not isinstance(eid, str) or not isinstance(seq, int) or not isinstance(etype, str):
        return None
    data = body.get("data")
    subject = body.get("subject")
    return Event(eid, where.store, where.gateway, seq, etype, str(body.get("time", "")),
                 subject if isinstance(subject, str) else None,
                 data if isinstance(data, dict) else {}, tag)


@dataclass(slots=True)
class _Held:
    event: Event
    tags: list[int]


@dataclass(slots=True)
class _Gateway:
    next: int | None  # next sequence to release; None: nothing seen yet
    held: dict[int, _Held] = field(default_factory=dict)
    hole_since: float | None = None
    asked_to: int = 0  # the highest sequence a resend request covered
    asked_at: float = 0.0


@dataclass(slots=True)
class Output:
    """What one step released: events to commit in order, deliveries to acknowledge after
    the commit, holes skipped, and resend requests."""

    events: list[Event] = field(default_factory=list)
    tags: list[int] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    resend: list[ResendRequest] = field(default_factory=list)


class Partition:
    """Ordering state of the gateways of one partition (see the module docstring)."""

    def __init__(self, *, gap_timeout_s: float = 10.0, resend_after_s: float = 2.0,
                 max_held: int = 10_000) -> None:
        self.gap_timeout_s = gap_timeout_s
        self.resend_after_s = resend_after_s
        self.max_held = max_held
        self._gw: dict[str, _Gateway] = {}

    def known(self, key: str) -> bool:
        return key in self._gw

    def start(self, key: str, last_sequence: int | None) -> None:
        """Begin tracking a gateway after the last sequence already committed (from the DB)."""
        self._gw[key] = _Gateway(None if last_sequence is None else last_sequence + 1)

    def next_sequence(self, key: str) -> int | None:
        gw = self._gw.get(key)
        return None if gw is None else gw.next

    def held(self) -> int:
        return sum(len(g.held) for g in self._gw.values())

    def reset(self) -> None:
        """Forget held events (their deliveries die with the connection); keep positions."""
        for gw in self._gw.values():
            gw.held.clear()
            gw.hole_since = None

    def offer(self, ev: Event, now: float, out: Output) -> None:
        gw = self._gw.get(ev.key)
        if gw is None:
            gw = self._gw[ev.key] = _Gateway(None)
        if gw.next is None and ev.seq <= 1:
            gw.next = ev.seq  # the stream's start: what was held behind it follows
        if gw.next is None or ev.seq > gw.next:
            self._hold(gw, ev, now, out)
        elif ev.seq < gw.next:  # a duplicate or a late fill: the database decides by id
            out.events.append(ev)
            out.tags.append(ev.tag)
        else:
            out.events.append(ev)
            out.tags.append(ev.tag)
            gw.next += 1
            self._drain(gw, out)

    def _hold(self, gw: _Gateway, ev: Event, now: float, out: Output) -> None:
        held = gw.held.get(ev.seq)
        if held is None:
            gw.held[ev.seq] = _Held(ev, [ev.tag])
        else:
            held.tags.append(ev.tag)  # a copy: acknowledged with the first, after commit
        if gw.hole_since is None:
            gw.hole_since = now
        if len(gw.held) > self.max_held:
            self._skip(gw, ev, out, now)

    def tick(self, now: float, out: Output) -> None:
        """Skip holes older than the timeout; ask for resends of holes older than
        `resend_after_s`."""
        for gw in self._gw.values():
            if gw.hole_since is None:
                continue
            age = now - gw.hole_since
            if gw.next is None:  # first seen mid-stream: nothing to ask for, a start to take
                if age >= self.gap_timeout_s:
                    self._skip(gw, next(iter(gw.held.values())).event, out, now)
                continue
            if age >= self.gap_timeout_s:
                first = next(iter(gw.held.values())).event
                self._skip(gw, first, out, now)
            elif age >= self.resend_after_s and (
                    gw.next > gw.asked_to or now - gw.asked_at >= 5 * self.resend_after_s):
                # Once per hole: a hole shrinking as the resend arrives is already asked
                # for; ask again only if the request seems lost.
                first = next(iter(gw.held.values())).event
                last = min(gw.held) - 1
                gw.asked_to, gw.asked_at = max(gw.asked_to, last), now
                out.resend.append(ResendRequest(first.store, first.gateway, gw.next, last))

    def _skip(self, gw: _Gateway, sample: Event, out: Output, now: float) -> None:
        """Release from the lowest held event on: past a hole (a Gap), or from an unknown
        start (none: nothing was missed that central could have had)."""
        lowest = min(gw.held)
        if gw.next is not None:
            out.gaps.append(Gap(sample.store, sample.gateway, gw.next, lowest - 1))
        gw.next = lowest
        self._drain(gw, out)
        gw.hole_since = now if gw.held else None

    @staticmethod
    def _drain(gw: _Gateway, out: Output) -> None:
        assert gw.next is not None
        while gw.held:
            held = gw.held.pop(gw.next, None)
            if held is None:
                break
            out.events.append(held.event)
            out.tags.extend(held.tags)
            gw.next += 1
        if not gw.held:
            gw.hole_since = None


def partitions(n: int) -> list[str]:
    """Every partition token of a fleet of `n` partitions (envelope.partition_of's range)."""
    return [f"p{i:03d}" for i in range(n)]


def owner_of(partition: str, members: list[str]) -> str:
    """Rendezvous hashing: each member computes the same owner with no coordination beyond
    the member list, and a member joining or leaving moves only its own share."""
    return max(members, key=lambda m: zlib.crc32(f"{m}|{partition}".encode()))


def projection(ev: Event) -> tuple[str, tuple[str, ...], tuple[Any, ...]] | None:
    """The typed row an event adds beside its `events` row: (table, columns, values)."""
    table = EVENT_TABLES.get(ev.type)
    if table is None:
        return None
    d = ev.data
    head = (ev.id, ev.store, ev.gateway)
    cols: tuple[str, ...]
    if table == "visits":
        cols = ("visit_id", "phase", "device", "radio", "duration_s", "customer_id")
        vals: tuple[Any, ...] = (
            _s(d.get("visit_id")), ev.type.rsplit(".", 1)[1], _s(d.get("device")),
            _s(d.get("radio")), _f(d.get("duration_s")), _s(d.get("customer_id")))
    elif table == "footfall":
        cols = ("time", "present", "entries", "exits", "passers_by")
        vals = (ev.time, _f(d.get("present")), _i(d.get("entries")), _i(d.get("exits")),
                _i(d.get("passers_by")))
    elif table == "occupancy":
        cols = ("time", "subject", "state")
        vals = (ev.time, ev.subject, orjson.dumps(d).decode())
    elif table == "links":
        cols = ("visit_id", "customer_id", "method")
        vals = (_s(d.get("visit_id")), _s(d.get("customer_id")), _s(d.get("method")))
    else:
        cols = ("offer_id", "customer_id", "visit_id", "zone")
        vals = (_s(d.get("offer_id")), _s(d.get("customer_id")), _s(d.get("visit_id")),
                _s(d.get("zone")))
    return table, ("event_id", "store", "gateway", *cols), (*head, *vals)


def outbox_depth(ev: Event) -> int | None:
    """A stats event's outbox depth (the gateway's backlog), else None."""
    if ev.type != "presence.gateway.stats":
        return None
    return _i(ev.data.get("outbox_depth"))


def counting(ev: Event) -> str | None:
    """A stats event's Wi-Fi placement in words for the health view (per sensor: a walk
    test's or a learnt offset, still learning, or cautious while the sensor's scale is not
    known: core/presence/placement.py), else None. Untrusted input: anything malformed is
    left out, at most MAX_SENSORS_SHOWN sensors are named."""
    place = ev.data.get("wifi_placement") if ev.type == "presence.gateway.stats" else None
    if not isinstance(place, dict):
        return None
    parts = []
    for sensor, p in sorted(place.items()):
        if not isinstance(p, dict) or not isinstance(sensor, str):
            continue
        off = _f(p.get("offset_db"))
        level = "?" if off is None or not abs(off) < 100 else f"{off:+.0f} dB" if round(off) \
            else "0 dB"
        if p.get("cautious") is True:
            parts.append(f"{sensor[:40]}: cautious, placement not learnt yet")
        elif p.get("source") == "learnt":
            parts.append(f"{sensor[:40]}: offset {level} learnt")
        elif p.get("source") == "configured":
            parts.append(f"{sensor[:40]}: offset {level} from the walk test")
        else:
            parts.append(f"{sensor[:40]}: learning")
    if len(parts) > MAX_SENSORS_SHOWN:
        parts = [*parts[:MAX_SENSORS_SHOWN], f"+{len(parts) - MAX_SENSORS_SHOWN} more"]
    return "; ".join(parts) or None


MAX_SENSORS_SHOWN = 6


def _s(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _f(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _i(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _when(v: object) -> float | None:
    """A status time: RFC 3339 (gateways from 0.1 on) or epoch seconds (older ones)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
