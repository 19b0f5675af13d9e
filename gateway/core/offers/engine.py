"""Offer engine: visit state changes + rules -> `presence.offer.triggered` events, under caps.

Invariants:
- Evaluation happens only on state changes, never per observation: a zone entered, a dwell
  mark (`presence.zone.dwell`) and a visit linked to a customer. A batch without such events
  costs one string test per event, whatever the number of rules.
- Dwell is *confirmed* dwell: a `dwell_at_least: 3m` rule fires at the first dwell mark of the
  stay at or past 3 minutes. The presence engine emits a mark only when a sighting proves the
  device is still there, so a customer who left after one minute never gets a 3-minute offer
  (a timer could not tell: a visit ends only `visit_timeout` after the last sighting). For
  exact timing the pipeline adds every rule's dwell to the engine's marks (`rules.dwell_marks`).
- A rule fires at most once per visit, and is evaluated at most once per zone stay; the first
  failing check is counted in `suppressed[(offer_id, reason)]` (consent, window, segment,
  visits, then limits in a fixed order), so a marketer sees why an offer did not go out.
- Consent scope `offers` is checked on every firing against the registry entry of the
  customer (`OfferContext.customer`); a visit without a customer id never fires.
- Limits count firings in a ledger (rolling 1 h / 24 h / 7 d windows, cooldown, per visit).
  New firings are queued for the store shell (`ledger_entries()`), and `load_ledger(rows)` at
  start restores them, so caps survive a restart. Limits are per gateway (one ledger each).
- `replace_rules` swaps the rule set atomically; ledger, visits and counters are kept. Rules new
  to a zone stay apply from its next dwell mark or the next zone entry.
- Pure: no clock, no I/O; time comes from event times and the `now` the caller passes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from presence_gateway.core.events import (
    Event,
    OfferTriggered,
    VisitEnded,
    VisitEvent,
    ZoneDwell,
    ZoneEntered,
    ZoneEvent,
    ZoneExited,
)
from presence_gateway.core.offers.ledger import Ledger
from presence_gateway.core.offers.ledger import (
    LedgerEntry as LedgerEntry,  # re-exported: part of the API
)
from presence_gateway.core.offers.rules import (
    DAY_NAMES,
    REQUIRED_CONSENT,
    Limits,
    OfferRule,
    RuleSet,
    Window,
)

ALL_VISITS_DAYS = 36500.0  # "all visits the registry remembers" (its retention bounds it)
_HOUR, _DAY, _WEEK = 3600.0, 86400.0, 7 * 86400.0
_EPS = 1e-6
MAX_OPEN_VISITS = 100_000
ALL_DAY = Window(0, 24 * 60)


class CustomerView(Protocol):
    @property
    def consent(self) -> frozenset[str]: ...
    @property
    def segments(self) -> Mapping[str, str]: ...


class OfferContext(Protocol):
    """What the engine asks identity (`identity_link.IdentityContext` fits).

    Consent is read at every decision, so a withdrawal takes effect on the next state change.
    """

    def customer(self, customer_id: str) -> CustomerView | None: ...
    def visits_in_last(self, customer_id: str, days: float, now: float) -> int: ...


class _Link(Protocol):
    @property
    def customer_id(self) -> str: ...


# visit id -> its link (identity's `Linker.link_for`): names the customer of a visit even when
# consent keeps the customer id off the visit's events (e.g. `offers` without
# `personalization`). Without it, the engine only knows customers from `data.customer_id`.
LinkLookup = Callable[[str], "_Link | None"]


@dataclass(slots=True)
class _Stay:
    zone: str
    entered: float
    dwell: float = 0.0                  # confirmed dwell (s): the last mark seen
    done: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Visit:
    visit_id: str
    customer: str | None = None
    stays: dict[str, _Stay] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)


class OfferEngine:
    def __init__(self, rules: RuleSet, *, timezone: str, store_id: str,
                 context: OfferContext | None = None, links: LinkLookup | None = None) -> None:
        self.tz = ZoneInfo(timezone)
        self.store_id = store_id
        self.context = context
        self.links = links
        self.ledger = Ledger()
        self.fired: Counter[str] = Counter()
        self.suppressed: Counter[tuple[str, str]] = Counter()
        # Oldest first; an OrderedDict so that dropping the oldest stays O(1) (a plain dict's
        # `next(iter(d))` skips the deleted slots that ended visits leave at its front).
        self._visits: OrderedDict[str, _Visit] = OrderedDict()
        self._pruned_at = float("-inf")
        self.replace_rules(rules)

    # -- rules ----------------------------------------------------------------------------
    def replace_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self._active = tuple(r for r in rules.rules if r.enabled)
        self._zone_cache: dict[str, tuple[OfferRule, ...]] = {}

    def _for_zone(self, zone: str) -> tuple[OfferRule, ...]:
        """Rules that can trigger in `zone`, in file order (cached per rule set)."""
        hit = self._zone_cache.get(zone)
        if hit is None:
            hit = self._zone_cache[zone] = tuple(
                r for r in self._active if r.when.zone in (None, zone))
        return hit

    # -- ledger ---------------------------------------------------------------------------
    def load_ledger(self, rows: Iterable[LedgerEntry]) -> None:
        for row in rows:
            self.ledger.add(row, new=False)

    def ledger_entries(self) -> list[LedgerEntry]:
        """New firings since the last call, for the store shell to persist."""
        out, self.ledger.pending = self.ledger.pending, []
        return out

    def forget(self, customer_id: str) -> None:
        """Right to erasure: forget the customer's firings and unlink their open visits."""
        self.ledger.forget(customer_id)
        for visit in self._visits.values():
            if visit.customer == customer_id:
                visit.customer = None

    # -- events ---------------------------------------------------------------------------
    def on_events(self, events: Sequence[Event], now: float) -> list[Event]:
        """Visit events in time order (already decorated by the linker) -> offer events.

        `now` is not needed for decisions (event times are); it keeps the pipeline protocol.
        """
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, VisitEvent):
                self._apply(ev, out)
        return out

    def _apply(self, ev: VisitEvent, out: list[Event]) -> None:
        vid = ev.visit_id
        if isinstance(ev, VisitEnded):
            self._visits.pop(vid, None)
            return
        visit = self._visits.get(vid)
        if visit is None:
            if len(self._visits) >= MAX_OPEN_VISITS:   # a lost visit.ended must not leak
                self._visits.popitem(last=False)
            visit = self._visits[vid] = _Visit(vid)
        if visit.customer is None:
            cid = ev.customer
            if cid is None and self.links is not None:
                link = self.links(vid)
                cid = link.customer_id if link is not None else None
            if isinstance(cid, str) and cid:
                visit.customer = cid
                for stay in list(visit.stays.values()):   # linked now: catch up on its stays
                    self._evaluate(visit, stay, ev.time, "linked", out)
        if not isinstance(ev, ZoneEvent):
            return
        zone = ev.zone
        if isinstance(ev, ZoneEntered):
            stay = visit.stays[zone] = _Stay(zone, ev.time)
            trigger = "zone_entered"
        elif isinstance(ev, ZoneDwell):
            stay = visit.stays.get(zone) or visit.stays.setdefault(zone, _Stay(zone, ev.time))
            if ev.dwell_s > stay.dwell:
                stay.dwell = float(ev.dwell_s)
            trigger = "dwell"
        else:
            if isinstance(ev, ZoneExited):
                visit.stays.pop(zone, None)
            return
        if visit.customer is not None:
            self._evaluate(visit, stay, ev.time, trigger, out)

    # -- evaluation -----------------------------------------------------------------------
    def _evaluate(self, visit: _Visit, stay: _Stay, at: float, trigger: str,
                  out: list[Event]) -> None:
        dwell = stay.dwell
        cid = visit.customer
        assert cid is not None
        view = self.context.customer(cid) if self.context is not None else None
        local = dt.datetime.fromtimestamp(at, self.tz)
        # What every rule compares against, computed once per state change, not per rule.
        moment = (local.date(), local.weekday(), local.hour * 60 + local.minute)
        visits: dict[float, int] = {}
        done, fired = stay.done, visit.fired
        for rule in self._for_zone(stay.zone):
            if rule.when.dwell_s > dwell + _EPS or rule.id in done:
                continue
            done.add(rule.id)
            if rule.id in fired:
                continue
            failed = self._conditions(rule, view, cid, moment, at, visits)
            if failed is None:
                failed = self._capped(rule, cid, visit.visit_id, at)
            if failed is not None:
                self.suppressed[(rule.id, failed)] += 1
                continue
            assert view is not None
            reason = _matched(rule, view, local, visits)
            reason.update(trigger=trigger, zone=stay.zone, dwell_s=round(dwell, 1))
            out.append(self._fire(rule, visit, stay.zone, at, reason))

    def _conditions(self, rule: OfferRule, view: CustomerView | None, cid: str,
                    moment: tuple[dt.date, int, int], at: float,
                    visits: dict[float, int]) -> str | None:
        """The name of the first condition that fails, or None when all hold."""
        w = rule.when
        today, day, minute = moment
        if (w.start_date and today < w.start_date) or (w.end_date and today > w.end_date):
            return "outside_dates"
        if _window(rule, day, minute) is None:
            return _outside(rule, day)
        if view is None:
            return "not_registered"
        if REQUIRED_CONSENT not in view.consent:
            return "no_consent"
        for key, allowed in w.segment:
            value = view.segments.get(key)
            if value is None or str(value) not in allowed:
                return "segment"
        if w.visits_at_least > 1:
            days = w.visits_within_days or ALL_VISITS_DAYS
            n = visits.get(days)
            if n is None:
                ctx = self.context
                n = visits[days] = ctx.visits_in_last(cid, days, at) if ctx is not None else 0
            if n < w.visits_at_least:
                return "visits"
        return None

    def _capped(self, rule: OfferRule, cid: str, vid: str, at: float) -> str | None:
        """The first limit this firing would break, or None. Rule limits, then store-wide."""
        led = self.ledger
        lim, store = rule.limits, self.rules.limits
        per_visit = len(led.visit.get(vid, ()))
        if lim.max_per_visit is not None and per_visit >= lim.max_per_visit:
            return "max_per_visit"
        if store.max_per_visit is not None and per_visit >= store.max_per_visit:
            return "store_max_per_visit"
        pair = led.pair.get((cid, rule.id))
        last = led.last(pair)
        if lim.cooldown_s and last is not None and at - last < lim.cooldown_s:
            return "cooldown"
        reason = _over(lim, pair, led.offer.get(rule.id), at, "")
        return reason or _over(store, led.customer.get(cid), led.store, at, "store_")

    def _fire(self, rule: OfferRule, visit: _Visit, zone: str, at: float,
              reason: dict[str, Any]) -> Event:
        cid = visit.customer
        assert cid is not None
        if at - self._pruned_at > _HOUR:   # keep the ledger to its horizon, hourly at most
            self._pruned_at = at
            self.ledger.prune(at - self.rules.horizon_s)
        self.ledger.add(LedgerEntry(at, rule.id, cid, visit.visit_id))
        visit.fired.add(rule.id)
        self.fired[rule.id] += 1
        return OfferTriggered(time=at, offer_id=rule.id, customer_id=cid,
                              visit_id=visit.visit_id, zone=zone, store_id=self.store_id,
                              rules_version=self.rules.version, reason=reason,
                              offer_payload=_plain(rule.payload))

    # -- introspection --------------------------------------------------------------------
    @property
    def open_visits(self) -> int:
        return len(self._visits)



def _over(lim: Limits, customer: list[float] | None, everyone: list[float] | None, at: float,
          prefix: str) -> str | None:
    count = Ledger.count
    if lim.per_day is not None and count(customer, at - _DAY) >= lim.per_day:
        return prefix + "per_customer_day"
    if lim.per_week is not None and count(customer, at - _WEEK) >= lim.per_week:
        return prefix + "per_customer_week"
    if lim.per_hour is not None and count(everyone, at - _HOUR) >= lim.per_hour:
        return prefix + "global_per_hour"
    return None


def _window(rule: OfferRule, day: int, minute: int) -> Window | None:
    """The hours window `minute` (store-local) falls in, `ALL_DAY` without hours, or None.

    An overnight window (22:00-02:00) belongs to the day it starts on: with `days: [fri]` it
    covers Friday 22:00 to Saturday 02:00.
    """
    w = rule.when
    if not w.hours:
        return ALL_DAY if day in w.days else None
    for win in w.hours:
        if not win.overnight:
            if win.start <= minute < win.end and day in w.days:
                return win
        elif (minute >= win.start and day in w.days) or (
                minute < win.end and (day - 1) % 7 in w.days):
            return win
    return None


def _outside(rule: OfferRule, day: int) -> str:
    """Name the window a time missed: the day (no window could match today) or the hours."""
    w = rule.when
    overnight_from_yesterday = any(h.overnight for h in w.hours) and (day - 1) % 7 in w.days
    return "outside_hours" if day in w.days or overnight_from_yesterday else "outside_days"


def _matched(rule: OfferRule, view: CustomerView, local: dt.datetime,
             visits: dict[float, int]) -> dict[str, Any]:
    """The reason of a firing: the conditions the rule set, with the values that met them."""
    w = rule.when
    out: dict[str, Any] = {"consent": REQUIRED_CONSENT,
                           "local_time": local.isoformat(timespec="seconds"),
                           "day": DAY_NAMES[local.weekday()]}
    win = _window(rule, local.weekday(), local.hour * 60 + local.minute)
    if win is not None and win is not ALL_DAY:
        out["hours"] = str(win)
    if w.start_date or w.end_date:
        out["dates"] = f"{w.start_date or ''}..{w.end_date or ''}"
    if w.segment:
        out["segment"] = {key: str(view.segments.get(key)) for key, _ in w.segment}
    if w.visits_at_least > 1:
        out["visits"] = visits[w.visits_within_days or ALL_VISITS_DAYS]
    return out


def _plain(value: Any) -> Any:
    """Payload mappings -> plain dicts (the envelope serialises with orjson)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
