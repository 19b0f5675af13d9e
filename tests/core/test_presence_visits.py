"""Visits with the default config: the contract the gateway spine relies on."""

from __future__ import annotations

from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.presence.visits import visit_id
from tests.core.presence_helpers import ble, run, visit_events, wifi


def engine(**kw: object) -> PresenceEngine:
    return PresenceEngine(PresenceSettings(**kw), gateway_id="gw-1", store_id="s1")  # type: ignore[arg-type]


def test_default_visit_started_after_two_sightings_and_ended_after_timeout() -> None:
    e = engine()
    trace = [wifi(1000.0 + 30 * i, "dev-a") for i in range(5)]  # 1000 .. 1120
    events = run(e, trace, until=2000.0)
    kinds = visit_events(events)
    assert kinds == [
        ("visit.started", 1030.0, None),
        ("zone.entered", 1030.0, "store"),
        ("zone.dwell", 1090.0, "store"),
        ("zone.exited", 1420.0, "store"),
        ("visit.ended", 1420.0, None),
    ]
    started = next(ev for ev in events if ev.type == "presence.visit.started")
    ended = next(ev for ev in events if ev.type == "presence.visit.ended")
    assert started.data["device"] == "dev-a"
    assert started.data["visit_id"] == ended.data["visit_id"] == visit_id("dev-a", 1000.0)
    assert ended.data["first_seen"] == 1000.0
    assert ended.data["last_seen"] == 1120.0
    assert ended.data["duration_s"] == 120.0
    assert ended.data["observations"] == 5
    assert ended.data["zones"] == ["store"]
    assert ended.subject == ended.data["visit_id"]


def test_one_off_sighting_is_not_a_visit() -> None:
    e = engine()
    events = run(e, [wifi(10.0, "x"), wifi(500.0, "x")], until=2000.0)
    assert visit_events(events) == []


def test_sighting_after_timeout_starts_a_new_visit_even_without_ticks() -> None:
    e = engine()
    out = []
    for ts in (0.0, 10.0, 1000.0, 1010.0):
        out += e.feed(wifi(ts, "d"))
    types = [ev.type.removeprefix("presence.") for ev in out
             if ev.type.startswith("presence.visit")]
    assert types == ["visit.started", "visit.ended", "visit.started"]
    ended = next(ev for ev in out if ev.type == "presence.visit.ended")
    assert ended.time == 310.0 and ended.data["observations"] == 2


def test_same_input_twice_gives_the_same_events() -> None:
    trace = [wifi(100.0 + 7 * i, f"d{i % 5}", -50 - (i * 13) % 30) for i in range(300)]
    trace += [ble(100.0 + 11 * i, f"b{i % 3}", -70 + i % 9) for i in range(100)]
    trace.sort(key=lambda o: o.ts)
    a = run(engine(), trace)
    b = run(engine(), trace)
    assert a == b
    assert any(ev.type == "presence.visit.ended" for ev in a)
