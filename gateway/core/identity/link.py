"""Linking visits to consented customers: `presence.identity.linked` and scoped customer ids.

The boundary resolves a sighting to a registry entry id (`Observation.identity`); the presence
engine emits visit and zone events keyed by the pseudonymous device. The `Linker` joins the two:
a visit whose device resolved to an entry is *linked* to that entry's customer.

What leaves the gateway (docs/identity.md, "Consent scopes"):
- `presence.identity.linked` (visit_id, customer_id, method) once per visit, only when the
  entry's consent includes `personalization`.
- After the link, `data.customer_id` is added to that visit's events only when the consent
  includes `personalization` (the link itself) AND the scope the event type needs
  (`EVENT_SCOPES`). Event types not listed never carry a customer id.
- Without consent nothing about the customer leaves: no linked event, no customer id. The
  internal link still exists (for `link_for`, e.g. the offer engine, which checks `offers`).

Invariants:
- Pure and deterministic; consent is read from the current registry entry at every decision, so
  a withdrawal (sync update, `forget`) takes effect on the next event, mid-visit included.
- At most one linked event per visit id; it precedes the first decorated event of the visit
  (it follows `presence.visit.started` when the link forms on that very event).
- Memory is bounded: per-visit state is dropped at `presence.visit.ended`, device -> entry
  mappings are capped, visit history lives in `_history` (loaded by the shell, purged by it).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from presence_gateway.core.events import (
    Event,
    EventType,
    IdentityLinked,
    VisitEnded,
    VisitEvent,
    VisitStarted,
)
from presence_gateway.core.identity.index import Entry, IdentityIndex, Scope
from presence_gateway.core.model import Observation

_DAY = 86400.0
_DEVICE_LIMIT = 65536

# The scope an event type needs before it may carry data.customer_id (in addition to the
# `personalization` every link needs). Real-time movement in the store is personalization;
# the visit summaries feed customer-level analytics; offers are their own consent.
EVENT_SCOPES: Mapping[EventType, Scope] = {
    EventType.IDENTITY_LINKED: Scope.PERSONALIZATION,
    EventType.VISIT_STARTED: Scope.ANALYTICS,
    EventType.VISIT_ENDED: Scope.ANALYTICS,
    EventType.ZONE_ENTERED: Scope.PERSONALIZATION,
    EventType.ZONE_EXITED: Scope.PERSONALIZATION,
    EventType.ZONE_DWELL: Scope.PERSONALIZATION,
    EventType.OFFER_TRIGGERED: Scope.OFFERS,
}


@dataclass(frozen=True, slots=True)
class Link:
    """A visit linked to a registry entry (internal; what may leave is decided per event)."""

    visit_id: str
    entry_id: str
    customer_id: str
    method: str
    ts: float


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """One linked visit of a customer with `offers` consent, for `visits_in_last`."""

    customer_id: str
    visit_id: str
    ts: float


class Linker:
    """`observe` each observation with an identity, `decorate` every batch of events."""

    def __init__(self, entries: Callable[[str], Entry | None],
                 history: Iterable[VisitRecord] = ()) -> None:
        self._entry = entries  # e.g. IdentityIndex.get: always the current registry
        # device key -> (entry id, ts), oldest first. An OrderedDict: dropping the oldest of
        # a plain dict leaves deleted slots at its front that `next(iter(d))` must skip (O(n)).
        self._device: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._visit_of: dict[str, str] = {}  # device key -> open visit id
        self._links: dict[str, Link] = {}  # open visit id -> link
        self._pending: dict[str, str] = {}  # visit id -> device, resolved while open
        self._history: dict[str, list[float]] = {}
        self._new: list[VisitRecord] = []
        for r in history:
            self._remember(r)

    # -- input -------------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        entry_id = obs.identity
        if entry_id is None:
            return
        device = self._device
        if obs.device not in device and len(device) >= _DEVICE_LIMIT:
            device.popitem(last=False)  # the oldest first seen
        device[obs.device] = (entry_id, obs.ts)
        visit = self._visit_of.get(obs.device)
        if visit is not None and visit not in self._links:
            self._pending[visit] = obs.device

    def decorate(self, events: Sequence[Event]) -> list[Event]:
        """Add linked events and scoped customer ids. Call it after every feed and tick, even
        with no events: links found by `observe` for an open visit are emitted then."""
        if not events and not self._pending:
            return []
        out: list[Event] = []
        for visit, device in list(self._pending.items()):
            self._link(visit, device, None, out)
        self._pending.clear()
        for ev in events:
            self._one(ev, out)
        return out

    def _one(self, ev: Event, out: list[Event]) -> None:
        if not isinstance(ev, VisitEvent):
            out.append(ev)
            return
        visit, device = ev.visit_id, ev.device
        ended = isinstance(ev, VisitEnded)
        if not ended:
            self._visit_of[device] = visit
        link = self._links.get(visit)
        if link is None:
            if not isinstance(ev, VisitStarted):
                link = self._link(visit, device, ev.time, out)
                out.append(self._scoped(ev, link))
            else:
                mark = len(out)
                out.append(ev)
                link = self._link(visit, device, ev.time, out)
                out[mark] = self._scoped(ev, link)
        else:
            out.append(self._scoped(ev, link))
        if ended:
            self._close(visit, device, ev.time)

    # -- linking -----------------------------------------------------------------------------
    def _link(self, visit: str, device: str, ts: float | None, out: list[Event]) -> Link | None:
        if visit in self._links:
            return self._links[visit]
        known = self._device.get(device)
        if known is None:
            return None
        entry = self._entry(known[0])
        if entry is None:
            return None
        when = known[1] if ts is None else ts
        link = Link(visit, entry.entry_id, entry.customer_id, entry.kind.value, when)
        self._links[visit] = link
        if entry.allows(Scope.OFFERS):
            record = VisitRecord(entry.customer_id, visit, when)
            self._remember(record)
            self._new.append(record)
        if entry.allows(Scope.PERSONALIZATION):
            out.append(IdentityLinked(time=when, visit_id=visit, device=device,
                                      customer_id=entry.customer_id, method=link.method))
        return link

    def _scoped(self, ev: VisitEvent, link: Link | None) -> Event:
        if link is None:
            return ev
        scope = EVENT_SCOPES.get(ev.type)
        entry = self._entry(link.entry_id)
        if scope is None or entry is None or entry.customer_id != link.customer_id:
            return ev
        if not (entry.allows(Scope.PERSONALIZATION) and entry.allows(scope)):
            return ev
        return ev.with_customer(link.customer_id)

    def _close(self, visit: str, device: object, ended: float) -> None:
        self._links.pop(visit, None)
        self._pending.pop(visit, None)
        if isinstance(device, str) and self._visit_of.get(device) == visit:
            del self._visit_of[device]
            # Keep a resolution made at or after the end: it belongs to the device's NEXT
            # visit, whose sightings can be observed (same batch) before this end is decorated.
            known = self._device.get(device)
            if known is not None and known[1] < ended:
                del self._device[device]

    # -- queries for rules and the shell -----------------------------------------------------
    def link_for(self, visit_id: str) -> Link | None:
        """The open link of a visit (whatever the consent: callers check their own scope)."""
        return self._links.get(visit_id)

    def visits_in_last(self, customer_id: str, days: float, now: float) -> int:
        """Linked visits (with `offers` consent) in (now - days, now], this one included."""
        times = self._history.get(customer_id)
        if not times:
            return 0
        return bisect_right(times, now) - bisect_right(times, now - days * _DAY)

    def take_visits(self) -> list[VisitRecord]:
        """New visit records since the last call, for the shell to store (registry DB)."""
        new, self._new = self._new, []
        return new

    def forget(self, customer_id: str) -> None:
        """Drop every in-memory trace of a customer (the registry erases the stored ones)."""
        self._history.pop(customer_id, None)
        self._new = [r for r in self._new if r.customer_id != customer_id]
        for visit in [v for v, lk in self._links.items() if lk.customer_id == customer_id]:
            del self._links[visit]
        gone = {d for d, (eid, _) in self._device.items()
                if (e := self._entry(eid)) is None or e.customer_id == customer_id}
        for d in gone:
            del self._device[d]

    def purge(self, before: float) -> None:
        """Forget visit history older than `before` (the shell's retention schedule)."""
        for customer in list(self._history):
            times = self._history[customer]
            del times[:bisect_right(times, before)]
            if not times:
                del self._history[customer]

    def _remember(self, r: VisitRecord) -> None:
        insort(self._history.setdefault(r.customer_id, []), r.ts)


@dataclass(frozen=True, slots=True)
class CustomerView:
    consent: frozenset[str]
    segments: Mapping[str, str]


class IdentityContext:
    """What the offer engine asks (its `OfferContext`): consent, segments and visit counts.

    A customer with several entries gets the scopes ALL of them grant (fail closed when the
    central system disagrees with itself) and the segments of all (first entry id wins).
    """

    def __init__(self, index: IdentityIndex, linker: Linker) -> None:
        self._index = index
        self._linker = linker

    def customer(self, customer_id: str) -> CustomerView | None:
        entries = sorted(self._index.of_customer(customer_id), key=lambda e: e.entry_id)
        if not entries:
            return None
        consent = frozenset.intersection(*(e.consent for e in entries))
        segments: dict[str, str] = {}
        for e in entries:
            for k, v in e.segments.items():
                segments.setdefault(k, v)
        return CustomerView(consent, segments)

    def visits_in_last(self, customer_id: str, days: float, now: float) -> int:
        return self._linker.visits_in_last(customer_id, days, now)
