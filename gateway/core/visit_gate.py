"""Which visits are published: every one (`all`, the default), or only visitors' (`visitors`).

On a real day most visits are passers-by: 380 of 447 on the Brno 2023-02-28 day, each with five
events (visit.started, zone.entered, zone.dwell, zone.exited, visit.ended) that a central system
mostly throws away, since passers-by are counted in `presence.footfall` (`passers_by`) anyway.
With `events.visits: visitors` a visit's events are held in memory until the visit is known to
be a visitor (the walk-in rule: `walk_in.min_time` and `walk_in.min_rssi`) and then published in
their original order with their original times; a visit that ends as a passer-by (or a fixture
that never walked in) publishes nothing, and is counted in `dropped`.

Invariants:
- Pure, no clock: it sees the events the engine built and asks the engine
  `is_visitor(device, visit_id)`.
- Everything else passes at once and in order: footfall, occupancy, stats, offers, identity
  links, command results. Offers and the identity linker see every event before the gate (they
  run in real time on the store's side whatever is published).
- A visit that names a consented customer (`customer_id` set by the linker) or that has an
  `identity.linked` event is released at once: opted-in customers' visits are always published.
- A held visit is released when the engine decides it walked in (`take_walkins`, the same
  batch), or at its end as a visitor: a visitor's first events reach the broker
  `walk_in.min_time` late, complete, with their own times, in sequence order.
- Bounded: at most `max_held` events are held; past that the oldest held visit is released
  (published, never lost) and counted in `overflowed`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from presence_gateway.core.events import (
    Event,
    IdentityLinked,
    VisitEnded,
    VisitStarted,
    ZoneDwell,
    ZoneEntered,
    ZoneExited,
)

MODES = ("all", "visitors")


class Classifier(Protocol):
    """What the gate asks the presence engine (core/presence/sessions.py)."""

    def is_visitor(self, device: str, visit_id: str) -> bool: ...
    def take_walkins(self) -> list[str]: ...

_HELD_TYPES = (VisitStarted, ZoneEntered, ZoneDwell, ZoneExited, VisitEnded)
MAX_HELD = 50_000


@dataclass(slots=True)
class GateStats:
    held: int = 0        # events held now
    dropped: int = 0     # events of passers-by never published
    overflowed: int = 0  # visits released early because too much was held


class VisitGate:
    def __init__(self, engine: Classifier, max_held: int = MAX_HELD) -> None:
        self._engine = engine
        engine.take_walkins()  # from now on the engine lists the visits that walk in
        self.max_held = max_held
        # visit id -> its events, oldest visit first (an OrderedDict: the oldest is O(1) even
        # after pops in the middle)
        self._held: OrderedDict[str, list[Event]] = OrderedDict()
        self._released: set[str] = set()  # open visits already published
        self.stats = GateStats()

    def __call__(self, events: Iterable[Event]) -> list[Event]:
        out: list[Event] = []
        walked = set(self._engine.take_walkins())
        for e in events:
            if isinstance(e, IdentityLinked):
                self._release(e.visit_id, out)
                out.append(e)
                continue
            if not isinstance(e, _HELD_TYPES):
                out.append(e)
                continue
            vid = e.visit_id
            if vid in self._released:
                out.append(e)
                if isinstance(e, VisitEnded):
                    self._released.discard(vid)
                continue
            if isinstance(e, VisitEnded):
                held = self._held.pop(vid, [])
                self.stats.held -= len(held)
                if e.classification == "visitor" or e.customer is not None:
                    out.extend(held)
                    out.append(e)
                else:
                    self.stats.dropped += len(held) + 1
                continue
            if e.customer is not None or vid in walked or self._engine.is_visitor(e.device, vid):
                self._release(vid, out)
                out.append(e)
                continue
            self._held.setdefault(vid, []).append(e)
            self.stats.held += 1
            if self.stats.held > self.max_held:
                self._overflow(out)
        # Walked in since the last call, with no event of its own since: released now (its
        # next events would otherwise wait for the next dwell mark or the exit).
        for vid in walked:
            if vid in self._held:
                self._release(vid, out)
        return out

    def _release(self, vid: str, out: list[Event]) -> None:
        held = self._held.pop(vid, None)
        if held:
            self.stats.held -= len(held)
            out.extend(held)
        self._released.add(vid)

    def _overflow(self, out: list[Event]) -> None:
        while self.stats.held > self.max_held and self._held:
            oldest = next(iter(self._held))
            self._release(oldest, out)
            self.stats.overflowed += 1

    # -- continuity: the held events go into the snapshot with the engine -----------------
    def freeze(self) -> tuple[dict[str, list[Event]], set[str]]:
        return dict(self._held), set(self._released)

    def adopt(self, state: tuple[dict[str, list[Event]], set[str]]) -> None:
        held, released = state
        self._held = OrderedDict(held)
        self._released = set(released)
        self.stats.held = sum(len(v) for v in self._held.values())
