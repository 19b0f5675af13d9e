"""Offer engine on scripted visits with known truth: exactly which offers fire, and which are
suppressed by each condition, window, consent, cooldown and cap; caps survive a restart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import orjson

from presence_gateway.core.events import Event, EventType
from presence_gateway.core.offers.engine import LedgerEntry, OfferEngine
from presence_gateway.core.offers.rules import RuleSet, dwell_marks, parse_rules
from tests.events import make

OFFER_TYPE = EventType.OFFER_TRIGGERED

TZ = "Europe/Berlin"
BERLIN = ZoneInfo(TZ)
ZONES = {"shoes", "cafe", "entrance"}


def at(day: int, hh: int, mm: int = 0) -> float:
    """Store-local time in June 2025 -> epoch seconds (2025-06-02 is a Monday)."""
    return dt.datetime(2025, 6, day, hh, mm, tzinfo=BERLIN).timestamp()


@dataclass(frozen=True, slots=True)
class Customer:
    consent: frozenset[str]
    segments: Mapping[str, str]


@dataclass
class Registry:
    """The identity registry as the engine sees it: entries and per-customer visit times."""

    customers: dict[str, Customer] = field(default_factory=dict)
    visits: dict[str, list[float]] = field(default_factory=dict)

    def add(self, cid: str, *, tier: str = "gold", consent: str = "offers analytics",
            past_visits: tuple[float, ...] = ()) -> None:
        self.customers[cid] = Customer(frozenset(consent.split()), {"tier": tier})
        self.visits[cid] = list(past_visits)

    def customer(self, customer_id: str) -> Customer | None:
        return self.customers.get(customer_id)

    def visits_in_last(self, customer_id: str, days: float, now: float) -> int:
        return sum(1 for t in self.visits.get(customer_id, []) if t > now - days * 86400)


class Shop:
    """Plays visits the way the presence engine + linker emit them."""

    def __init__(self, engine: OfferEngine, registry: Registry) -> None:
        self.engine = engine
        self.registry = registry
        self.fired: list[Event] = []
        self.n = 0
        self.prefix = "v"  # visit ids are unique per run of the presence engine

    def feed(self, *events: Event) -> list[Event]:
        out = self.engine.on_events(list(events), max(e.time for e in events))
        self.fired.extend(out)
        return out

    def visit(self, cid: str | None, start: float, stays: list[tuple[str, float]],
              marks: tuple[float, ...] = (60.0, 180.0, 300.0)) -> list[Event]:
        """One visit: for each (zone, seconds) the zone is entered, dwell marks up to the
        stay's length are emitted, then it is exited; the visit ends after the last stay."""
        self.n += 1
        vid = f"{self.prefix}{self.n}"
        if cid is not None:
            self.registry.visits.setdefault(cid, []).append(start)
        base: dict[str, object] = {"visit_id": vid, "device": f"d{self.n}"}
        if cid is not None:
            base["customer_id"] = cid
        out = self.feed(make("presence.visit.started", start, dict(base)))
        t = start
        for zone, length in stays:
            out += self.feed(make("presence.zone.entered", t, {**base, "zone": zone}))
            for m in marks:
                if m <= length:
                    out += self.feed(make("presence.zone.dwell", t + m,
                                           {**base, "zone": zone, "dwell_s": m}))
            t += length
            out += self.feed(make("presence.zone.exited", t,
                                   {**base, "zone": zone, "dwell_s": length}))
        out += self.feed(make("presence.visit.ended", t + 300, dict(base)))
        return out


ISSUE_RULE = """\
offers:
  - id: shoes-gold
    description: Gold members who browse shoes for 3 minutes
    when:
      zone: shoes
      dwell_at_least: 3m
      segment: {tier: [gold, platinum]}
      visits_at_least: 2
      days: [mon, tue, wed, thu, fri]
      hours: "09:00-20:00"
    limits:
      cooldown: 1h
      per_customer: {day: 1, week: 3}
      global_per_hour: 200
      max_per_visit: 1
    payload: {campaign: SHOES10, channel: app_push}
"""


def rules(text: str) -> RuleSet:
    return parse_rules(text, "offers.yaml", zones=ZONES)


def shop(text: str = ISSUE_RULE, registry: Registry | None = None) -> Shop:
    reg = registry or Registry()
    return Shop(OfferEngine(rules(text), timezone=TZ, store_id="s1", context=reg), reg)


def suppressed(s: Shop) -> dict[tuple[str, str], int]:
    return dict(s.engine.suppressed)


def test_issue_example_fires_once_at_the_three_minute_mark_with_reason_and_payload() -> None:
    s = shop()
    s.registry.add("alice", past_visits=(at(1, 11),))
    out = s.visit("alice", at(2, 14), [("cafe", 240), ("shoes", 400)])
    assert [e.type for e in out] == [OFFER_TYPE]
    ev = out[0]
    assert ev.time == at(2, 14, 4) + 180  # cafe 4 min, then 3 min in shoes
    assert ev.subject == "shoes-gold"
    d = ev.data
    assert (d["offer_id"], d["customer_id"], d["visit_id"], d["zone"]) == (
        "shoes-gold", "alice", "v1", "shoes")
    assert d["payload"] == {"campaign": "SHOES10", "channel": "app_push"}
    assert d["reason"] == {
        "consent": "offers", "local_time": "2025-06-02T14:07:00+02:00", "day": "mon",
        "hours": "09:00-20:00", "segment": {"tier": "gold"}, "visits": 2,
        "trigger": "dwell", "zone": "shoes", "dwell_s": 180.0}
    orjson.dumps(d)  # the envelope serialises it as is
    assert dict(s.engine.fired) == {"shoes-gold": 1} and suppressed(s) == {}


def test_conditions_each_suppress_with_their_reason() -> None:
    s = shop()
    s.registry.add("silver", tier="silver", past_visits=(at(1, 11),))
    s.registry.add("newbie")
    s.registry.add("noconsent", consent="analytics personalization", past_visits=(at(1, 11),))
    s.registry.add("weekend", past_visits=(at(1, 11),))
    s.registry.add("late", past_visits=(at(1, 11),))
    assert s.visit("silver", at(2, 14), [("shoes", 200)]) == []
    assert s.visit("newbie", at(2, 14), [("shoes", 200)]) == []
    assert s.visit("noconsent", at(2, 14), [("shoes", 200)]) == []
    assert s.visit("weekend", at(7, 14), [("shoes", 200)]) == []   # Saturday
    assert s.visit("late", at(2, 19, 58), [("shoes", 200)]) == []  # 3 min -> 20:01
    assert s.visit("stranger", at(2, 14), [("shoes", 200)]) == []  # not in the registry
    assert s.visit(None, at(2, 14), [("shoes", 200)]) == []        # anonymous: not counted
    assert suppressed(s) == {
        ("shoes-gold", "segment"): 1, ("shoes-gold", "visits"): 1,
        ("shoes-gold", "no_consent"): 1, ("shoes-gold", "outside_days"): 1,
        ("shoes-gold", "outside_hours"): 1, ("shoes-gold", "not_registered"): 1}
    assert s.fired == []


def test_leaving_before_the_dwell_mark_fires_nothing() -> None:
    s = shop()
    s.registry.add("alice", past_visits=(at(1, 11),))
    assert s.visit("alice", at(2, 14), [("shoes", 170), ("cafe", 600)]) == []
    assert suppressed(s) == {}


def test_cooldown_then_day_cap_then_week_cap() -> None:
    text = ISSUE_RULE.replace("per_customer: {day: 1, week: 3}", "per_customer: {day: 2, week: 3}")
    s = shop(text)
    s.registry.add("alice", past_visits=(at(1, 11),))
    fired = []
    fired += s.visit("alice", at(2, 10), [("shoes", 200)])        # fires
    fired += s.visit("alice", at(2, 10, 30), [("shoes", 200)])    # 30 min later: cooldown
    fired += s.visit("alice", at(2, 12), [("shoes", 200)])        # 2 h later: fires (2/day)
    fired += s.visit("alice", at(2, 15), [("shoes", 200)])        # day cap reached
    fired += s.visit("alice", at(3, 15), [("shoes", 200)])        # next day: fires (3/week)
    fired += s.visit("alice", at(4, 15), [("shoes", 200)])        # week cap
    fired += s.visit("alice", at(9, 15, 30), [("shoes", 200)])    # a week after the first
    assert [e.data["visit_id"] for e in fired] == ["v1", "v3", "v5", "v7"]
    assert suppressed(s) == {("shoes-gold", "cooldown"): 1,
                             ("shoes-gold", "per_customer_day"): 1,
                             ("shoes-gold", "per_customer_week"): 1}


def test_global_per_hour_cap_counts_every_customer() -> None:
    s = shop(ISSUE_RULE.replace("global_per_hour: 200", "global_per_hour: 2"))
    for c in ("a", "b", "c", "d"):
        s.registry.add(c, past_visits=(at(1, 11),))
    got = [len(s.visit(c, at(2, 10, i * 5), [("shoes", 200)])) for i, c in enumerate("abc")]
    assert got == [1, 1, 0]
    assert len(s.visit("d", at(2, 11, 5), [("shoes", 200)])) == 1  # the hour has rolled on
    assert suppressed(s) == {("shoes-gold", "global_per_hour"): 1}


TWO_RULES = """\
limits: {per_customer: {day: 5}}
offers:
  - id: hello-shoes
    description: on entering shoes
    when: {zone: shoes}
    limits: {max_per_visit: 1}
    payload: {campaign: HELLO}
  - id: any-zone-1m
    description: one minute anywhere
    when: {dwell_at_least: 1m}
    limits: {max_per_visit: 2}
  - id: cafe
    description: cafe entry
    when: {zone: cafe}
    limits: {max_per_visit: 2}
"""


def test_max_per_visit_counts_offers_of_any_kind_and_rules_fire_once_per_visit() -> None:
    s = shop(TWO_RULES)
    s.registry.add("bob")
    out = s.visit("bob", at(2, 10), [("shoes", 120), ("cafe", 120), ("shoes", 120)])
    # shoes entry -> hello-shoes; 1 min in shoes -> any-zone-1m; cafe: 2 offers already.
    assert [(e.data["offer_id"], e.data["zone"]) for e in out] == [
        ("hello-shoes", "shoes"), ("any-zone-1m", "shoes")]
    assert suppressed(s) == {("cafe", "max_per_visit"): 1}


def test_store_wide_limits_apply_across_offers() -> None:
    s = shop(TWO_RULES.replace("limits: {per_customer: {day: 5}}",
                               "limits: {per_customer: {day: 2}, max_per_visit: 1}"))
    s.registry.add("bob")
    assert len(s.visit("bob", at(2, 10), [("shoes", 120)])) == 1
    assert len(s.visit("bob", at(2, 11), [("cafe", 120)])) == 1
    assert s.visit("bob", at(2, 12), [("cafe", 120)]) == []
    assert suppressed(s) == {("any-zone-1m", "store_max_per_visit"): 2,
                             ("any-zone-1m", "store_per_customer_day"): 1,
                             ("cafe", "store_per_customer_day"): 1}


def test_dates_and_overnight_window() -> None:
    text = """\
offers:
  - id: summer
    description: dates
    when: {zone: cafe, start_date: 2025-06-03, end_date: 2025-06-04}
  - id: friday-night
    description: overnight window belongs to the day it starts
    when: {zone: shoes, days: [fri], hours: "22:00-02:00"}
"""
    s = shop(text)
    s.registry.add("c")
    for day in (2, 3, 4, 5):
        s.visit("c", at(day, 12), [("cafe", 30)])
    s.visit("c", at(6, 23), [("shoes", 30)])            # Fri 23:00: yes
    s.visit("c", at(7, 1, 30), [("shoes", 30)])         # Sat 01:30 (Friday night): yes
    s.visit("c", at(7, 23), [("shoes", 30)])            # Sat 23:00: no
    s.visit("c", at(6, 21), [("shoes", 30)])            # Fri 21:00: no
    assert [e.data["visit_id"] for e in s.fired] == ["v2", "v3", "v5", "v6"]
    assert suppressed(s) == {("summer", "outside_dates"): 2,
                             ("friday-night", "outside_hours"): 2}


def test_a_visit_linked_after_entering_the_zone_catches_up() -> None:
    s = shop()
    s.registry.add("alice", past_visits=(at(1, 11),))
    s.registry.visits["alice"].append(at(2, 14))
    base = {"visit_id": "v9", "device": "d9"}
    t = at(2, 14)
    assert s.feed(make("presence.zone.entered", t, {**base, "zone": "shoes"})) == []
    assert s.feed(make("presence.zone.dwell", t + 180,
                        {**base, "zone": "shoes", "dwell_s": 180})) == []
    out = s.feed(make("presence.identity.linked", t + 200,
                       {**base, "customer_id": "alice", "method": "ibeacon"}))
    assert [(e.data["offer_id"], e.data["reason"]["trigger"]) for e in out] == [
        ("shoes-gold", "linked")]


def test_restart_mid_day_keeps_the_caps_through_the_ledger() -> None:
    reg = Registry()
    reg.add("alice", past_visits=(at(1, 11),))
    first = shop(registry=reg)
    assert len(first.visit("alice", at(2, 10), [("shoes", 200)])) == 1
    rows = first.engine.ledger_entries()
    assert rows == [LedgerEntry(at(2, 10) + 180, "shoes-gold", "alice", "v1")]
    assert first.engine.ledger_entries() == []  # handed over once
    # The gateway restarts at noon; the store shell loads the persisted rows.
    again = shop(registry=reg)
    again.prefix = "w"
    again.engine.load_ledger(rows)
    assert again.visit("alice", at(2, 13), [("shoes", 200)]) == []
    assert suppressed(again) == {("shoes-gold", "per_customer_day"): 1}
    assert again.engine.ledger_entries() == []
    # Control: without the ledger the same visit would have fired.
    amnesiac = shop(registry=reg)
    assert len(amnesiac.visit("alice", at(2, 13), [("shoes", 200)])) == 1


def test_replace_rules_keeps_the_ledger_and_state() -> None:
    s = shop()
    s.registry.add("alice", past_visits=(at(1, 11),))
    s.visit("alice", at(2, 10), [("shoes", 200)])
    s.engine.replace_rules(rules(ISSUE_RULE.replace("3m", "1m")))
    assert s.visit("alice", at(2, 10, 30), [("shoes", 200)]) == []
    assert suppressed(s) == {("shoes-gold", "cooldown"): 1}


def test_only_state_changes_are_evaluated() -> None:
    s = shop()
    s.registry.add("alice", past_visits=(at(1, 11),))
    noise = [make("presence.footfall", at(2, 10), {"present": 3}),
             make("presence.gateway.stats", at(2, 10), {"observations": 10}),
             make("presence.visit.started", at(2, 10), {"visit_id": "v", "customer_id": "alice"})]
    assert s.engine.on_events(noise, at(2, 10)) == []
    assert suppressed(s) == {} and s.engine.open_visits == 1


def test_disabled_rules_never_evaluate_and_dwell_marks_merge() -> None:
    text = ISSUE_RULE + "    enabled: false\n"
    s = shop(text)
    s.registry.add("alice", past_visits=(at(1, 11),))
    assert s.visit("alice", at(2, 10), [("shoes", 400)]) == [] and suppressed(s) == {}
    assert dwell_marks(rules(ISSUE_RULE), (60.0, 300.0)) == (60.0, 180.0, 300.0)
    assert dwell_marks(rules(text), (60.0,)) == (60.0,)


def test_ledger_prunes_beyond_its_horizon() -> None:
    s = shop()
    s.engine.load_ledger([LedgerEntry(at(1, 10) - 30 * 86400, "shoes-gold", "old", "v0")])
    s.registry.add("alice", past_visits=(at(1, 11),))
    s.visit("alice", at(2, 10), [("shoes", 200)])
    assert s.engine.ledger.size == 1 and "old" not in s.engine.ledger.customer


def test_with_identitys_real_linker_offers_only_consent_still_fires() -> None:
    """The customer id is withheld from zone events without `personalization`, yet an
    `offers`-only customer gets the offer: the engine asks the link, not the event."""
    from types import MappingProxyType

    from presence_gateway.core.identity.index import Entry, EntryKind, IdentityIndex
    from presence_gateway.core.identity.link import IdentityContext, Linker
    from presence_gateway.core.model import AddressKind, Observation, Radio

    entries = {
        "e1": Entry("e1", "alice", EntryKind.IBEACON, "h1", frozenset({"offers"}),
                    MappingProxyType({"tier": "gold"})),
        "e2": Entry("e2", "bob", EntryKind.IBEACON, "h2", frozenset({"personalization"}),
                    MappingProxyType({"tier": "gold"})),
    }
    index = IdentityIndex(lambda value, domain: value.hex(), entries.values())
    linker = Linker(index.get)
    engine = OfferEngine(rules(ISSUE_RULE.replace("visits_at_least: 2", "visits_at_least: 1")),
                         timezone=TZ, store_id="s1", context=IdentityContext(index, linker),
                         links=linker.link_for)
    fired: list[Event] = []
    for n, (device, entry) in enumerate((("dA", "e1"), ("dB", "e2"))):
        t = at(2, 10 + n)
        linker.observe(Observation(t, Radio.BLE, device, AddressKind.RANDOM, -60, 37,
                                   "ibeacon", identity=entry))
        vid = f"visit-{device}"
        script = [make("presence.visit.started", t, {"visit_id": vid, "device": device}),
                  make("presence.zone.entered", t, {"visit_id": vid, "device": device,
                                                     "zone": "shoes"}),
                  make("presence.zone.dwell", t + 180, {"visit_id": vid, "device": device,
                                                         "zone": "shoes", "dwell_s": 180})]
        for ev in script:
            decorated = linker.decorate([ev])
            zone_events = [e for e in decorated if e.type.startswith("presence.zone")]
            assert all(("customer_id" in e.data) == (entry == "e2") for e in zone_events)
            fired += engine.on_events(decorated, ev.time)
    assert [(e.data["customer_id"], e.data["offer_id"]) for e in fired] == [
        ("alice", "shoes-gold")]
    assert dict(engine.suppressed) == {("shoes-gold", "no_consent"): 1}
