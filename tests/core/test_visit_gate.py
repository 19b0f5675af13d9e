"""`events.visits: visitors`: passers-by's visits are not published, visitors' are, complete.

Scripted traces through the real presence engine and pipeline (no broker): the same trace is
run with and without the gate, so every published event is compared with what the default
publishes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from presence_gateway.core.config import parse_config
from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.events import (
    Event,
    IdentityLinked,
    VisitEnded,
    VisitStarted,
    ZoneEntered,
)
from presence_gateway.core.model import Observation
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.visit_gate import VisitGate
from presence_gateway.errors import ConfigError
from tests.core.presence_helpers import wifi


class Never:
    """An engine where nobody walks in."""

    def is_visitor(self, device: str, visit_id: str) -> bool:
        return False

    def take_walkins(self) -> list[str]:
        return []

VISIT_TYPES = {"presence.visit.started", "presence.zone.entered", "presence.zone.dwell",
               "presence.zone.exited", "presence.visit.ended"}


def trace() -> list[Observation]:
    """A visitor (strong, 20 min), two passers-by (strong for 1 min; weak for 8 min), both
    after the engine's first walk_in.min_time (a device heard then may have been inside
    before the start: the cold-start rule counts it as inside)."""
    obs = [wifi(float(t), "visitor", -55) for t in range(0, 1200, 20)]
    obs += [wifi(400.0 + t, "passer", -60) for t in range(0, 60, 10)]
    obs += [wifi(450.0 + t, "weak", -85) for t in range(0, 480, 20)]
    return sorted(obs, key=lambda o: o.ts)


def publish(gated: bool, observations: Iterable[Observation]) -> list[dict[str, Any]]:
    engine = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    pipe = Pipeline(engine=engine, gateway_id="gw",
                    envelope=Envelope(topics=Topics("presence", "s", "gw"), source="urn:t"),
                    gate=VisitGate(engine) if gated else None)
    out = []
    for o in observations:
        out += pipe.feed_many([o], capture_clock=True)
    out += pipe.finish()
    return [orjson.loads(m.payload) for m in out]


def key(e: dict[str, Any]) -> tuple[Any, ...]:
    """An event without its envelope's id and sequence (those differ between runs)."""
    return (e["type"], e["time"], orjson.dumps(e["data"], option=orjson.OPT_SORT_KEYS))


def test_passers_by_publish_no_visit_events_and_visitors_publish_all_of_theirs() -> None:
    everything = publish(False, trace())
    gated = publish(True, trace())
    ended = {e["data"]["device"]: e["data"]["classification"] for e in everything
             if e["type"] == "presence.visit.ended"}
    assert ended == {"visitor": "visitor", "passer": "passer_by", "weak": "passer_by"}
    visitor_events = [key(e) for e in everything
                      if e["type"] in VISIT_TYPES and e["data"]["device"] == "visitor"]
    assert len(visitor_events) >= 5
    # the visitor's events, all of them, in the same order; nothing of the passers-by
    assert [key(e) for e in gated if e["type"] in VISIT_TYPES] == visitor_events
    # everything else (footfall with its passer-by counts, occupancy) is unchanged; the stats
    # count the events published
    other = VISIT_TYPES | {"presence.gateway.stats"}
    assert [key(e) for e in gated if e["type"] not in other] == \
        [key(e) for e in everything if e["type"] not in other]
    last = [e for e in gated if e["type"] == "presence.gateway.stats"][-1]
    assert last["data"]["events"]["presence.visit.started"] == 1
    passers = sum(e["data"]["passers_by"] for e in gated if e["type"] == "presence.footfall")
    assert passers == 2
    # sequence numbers stay gapless: a consumer's gap check must not see the dropped ones
    assert [e["sequence"] for e in gated] == list(range(1, len(gated) + 1))


def started(visit: str, device: str = "d", t: float = 0.0) -> VisitStarted:
    return VisitStarted(time=t, visit_id=visit, device=device, radio="wifi", first_seen=t,
                        observations=2, rssi=-60.0)


def ended(visit: str, classification: str, device: str = "d") -> VisitEnded:
    return VisitEnded(time=9.0, visit_id=visit, device=device, radio="wifi", first_seen=0.0,
                      last_seen=9.0, duration_s=9.0, observations=5, zones=("store",),
                      dwell_s=9.0, classification=classification, reason="timeout",
                      max_rssi=-50.0)


def test_consented_customers_visits_are_released_at_once() -> None:
    gate = VisitGate(Never())
    held: list[Event] = [started("v1"), ZoneEntered(time=1.0, visit_id="v1", device="d",
                                                    zone="store", rssi=-60.0, distance_m=3.0,
                                                    proximity="far")]
    assert gate(held) == []
    linked = IdentityLinked(time=2.0, visit_id="v1", device="d", customer_id="c1",
                            method="app_token")
    assert gate([linked]) == [*held, linked]
    # the rest of that visit passes, and its end too, even as a passer-by
    assert gate([ended("v1", "passer_by")]) == [ended("v1", "passer_by")]
    # a customer id set by the linker on any event of a held visit releases it
    gate([started("v2")])
    mine = started("v2").with_customer("c2")
    assert gate([mine]) == [started("v2"), mine]


def test_memory_is_bounded_and_nothing_is_lost_when_it_overflows() -> None:
    gate = VisitGate(Never(), max_held=100)
    out = gate([started(f"v{i}") for i in range(150)])
    assert gate.stats.held <= 100
    assert [e.visit_id for e in out] == [f"v{i}" for i in range(50)]  # type: ignore[attr-defined]
    assert gate.stats.overflowed == 50
    # an overflowed visit is released for good: its end is published as it comes
    assert gate([ended("v0", "passer_by")]) == [ended("v0", "passer_by")]
    assert gate([ended("v149", "passer_by")]) == []
    assert gate.stats.dropped == 2


def test_held_visits_survive_a_snapshot() -> None:
    gate = VisitGate(Never())
    gate([started("v1")])
    again = VisitGate(Never())
    again.adopt(gate.freeze())
    assert again([ended("v1", "visitor")]) == [started("v1"), ended("v1", "visitor")]


def test_config_key_and_its_errors() -> None:
    assert parse_config("", "<defaults>").visit_events == "all"
    cfg = parse_config("events:\n  visits: visitors\n", "gw.yaml")
    assert cfg.visit_events == "visitors"
    with pytest.raises(ConfigError) as err:
        parse_config("events:\n  visits: some\n", "gw.yaml")
    assert "gw.yaml:2 events.visits" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config("events:\n  visitz: all\n", "gw.yaml")
    assert "events.visitz" in str(err.value)
