"""Scripted traces with known truth: zones, walk-by, staff, flapping, two gateways, memory."""

from __future__ import annotations

import math

from presence_gateway.core.events import Event
from presence_gateway.core.presence.config import ZoneSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from tests.core.presence_helpers import ble, placed, run, visit_events, wifi

SHOP = (ZoneSettings("shoes", ("s1",), -70.0, -76.0, min_confirm_s=10.0),
        ZoneSettings("tills", ("s2",), -70.0, -76.0, min_confirm_s=10.0))


def engine(gw: str = "gw-1", **kw: object) -> PresenceEngine:
    settings = placed(gw, **kw)
    return PresenceEngine(settings, gateway_id=gw, store_id="s1")


def footfalls(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == "presence.footfall"]


def test_person_walks_in_browses_two_zones_and_leaves() -> None:
    # The gateway has been running for a while (else the cold-start rule applies: a device
    # heard in the first walk-in time may have been inside already and is no entry).
    trace = [ble(-600.0, "shelf-beacon", -50, kind="ibeacon")]
    trace += [wifi(float(t), "p", -60, "s1") for t in range(0, 201, 10)]
    trace += [wifi(float(t), "p", -60, "s2") for t in range(210, 401, 10)]
    events = run(engine(zones=SHOP, rssi_offsets=(("s1", 0.0), ("s2", 0.0))), trace,
                 until=2000.0)
    assert visit_events(events) == [
        ("visit.started", 10.0, None),
        ("zone.entered", 20.0, "shoes"),
        ("zone.dwell", 80.0, "shoes"),
        ("zone.exited", 220.0, "shoes"),
        ("zone.entered", 220.0, "tills"),
        ("zone.dwell", 280.0, "tills"),
        ("zone.exited", 700.0, "tills"),
        ("visit.ended", 700.0, None),
    ]
    exits = [e for e in events if e.type == "presence.zone.exited"]
    assert [e.data["dwell_s"] for e in exits] == [200.0, 180.0]
    ended = events[[e.type for e in events].index("presence.visit.ended")]
    assert ended.data["zones"] == ["shoes", "tills"]
    assert ended.data["dwell_s"] == 380.0
    assert ended.data["classification"] == "visitor"
    ff = footfalls(events)
    assert sum(e.data["entries"] for e in ff) == 1
    assert sum(e.data["exits"] for e in ff) == 1
    assert sum(e.data["zones"]["tills"]["entries"] for e in ff) == 1
    # present while inside (after the walk-in rule), 0.8 people per device by default
    at_360 = next(e for e in ff if e.time == 360.0)
    assert at_360.data["present"] == 0.8
    assert at_360.data["zones"]["tills"]["present"] == 0.8
    retained = [e for e in events if e.retained]
    assert {e.topic_suffix for e in retained} == {"occupancy", "occupancy/shoes",
                                                  "occupancy/tills"}


def test_passer_by_is_not_a_visitor() -> None:
    trace = [wifi(float(t), "walker", -82) for t in range(0, 61, 15)]
    events = run(engine(), trace, until=1000.0)
    ended = [e for e in events if e.type == "presence.visit.ended"]
    assert [e.data["classification"] for e in ended] == ["passer_by"]
    ff = footfalls(events)
    assert sum(e.data["passers_by"] for e in ff) == 1
    assert sum(e.data["entries"] for e in ff) == 0
    assert all(e.data["present"] == 0.0 for e in ff)
    assert ff[-1].data["capture_rate"] == 0.0


def test_staff_present_all_day_is_excluded_after_the_limit() -> None:
    trace = [wifi(float(t), "staff", -55) for t in range(0, 7201, 30)]
    events = run(engine(fixture_max_presence_s=3600.0), trace, until=9000.0)
    kinds = [(k, t) for k, t, _ in visit_events(events) if k.startswith("visit")]
    assert kinds == [("visit.started", 30.0), ("visit.ended", 3630.0)]
    ended = next(e for e in events if e.type == "presence.visit.ended")
    assert ended.data["classification"] == "fixture" and ended.data["reason"] == "fixture"
    assert all(e.data["present"] == 0.0 for e in footfalls(events) if e.time > 3700.0)


def test_listed_fixture_never_starts_a_visit() -> None:
    trace = [ble(float(t), "till-beacon", -50, kind="ibeacon") for t in range(0, 600, 5)]
    events = run(engine(fixture_ids=frozenset({"till-beacon"})), trace)
    assert visit_events(events) == []


FLAP = (ZoneSettings("door", (), -65.0, -71.0, min_confirm_s=10.0),)


def flapping_trace() -> list:  # type: ignore[type-arg]
    trace = [ble(float(t), "f", -60) for t in range(0, 30, 2)]
    # ten minutes on the boundary: readings jump 12 dB either side of the thresholds
    trace += [ble(float(t), "f", -62 if (t // 2) % 2 else -74) for t in range(30, 630, 2)]
    return trace


def test_flapping_device_at_a_boundary_gives_one_enter_and_one_exit() -> None:
    events = run(engine(zones=FLAP), flapping_trace(), until=2000.0)
    assert visit_events(events) == [
        ("visit.started", 2.0, None),
        ("zone.entered", 12.0, "door"),
        ("zone.dwell", 72.0, "door"),
        ("zone.dwell", 312.0, "door"),
        ("zone.exited", 928.0, "door"),
        ("visit.ended", 928.0, None),
    ]


def test_without_hysteresis_the_same_trace_storms() -> None:
    raw = (ZoneSettings("door", (), -68.0, -68.0, min_confirm_s=0.0),)
    events = run(engine(zones=raw, kalman_measurement_noise=0.01), flapping_trace(),
                 until=2000.0)
    assert sum(1 for k, _, _ in visit_events(events) if k == "zone.entered") > 50


def test_two_gateways_hand_over_one_visit() -> None:
    a = engine("gw-a", zones=(ZoneSettings("front", ("a",), -200.0, -200.0),))
    b = engine("gw-b", zones=(ZoneSettings("back", ("b",), -200.0, -200.0),))
    out: dict[str, list[Event]] = {"gw-a": [], "gw-b": []}
    a.apply_peer_summary("gw-b", [], -1.0)  # both gateways already talk when the device comes
    b.apply_peer_summary("gw-a", [], -1.0)
    for t in range(0, 241, 5):
        ts = float(t)
        near_a = t < 120
        out["gw-a"] += a.feed(wifi(ts, "d", -55 if near_a else -82, "a"))
        out["gw-b"] += b.feed(wifi(ts + 1, "d", -82 if near_a else -55, "b"))
        if t % 10 == 0:  # summaries every 10 s, both ways, then each gateway ticks
            sa, sb = a.peer_summary(ts + 1), b.peer_summary(ts + 1)
            b.apply_peer_summary("gw-a", sa, ts + 1)
            a.apply_peer_summary("gw-b", sb, ts + 1)
            out["gw-a"] += a.tick(ts + 2)
            out["gw-b"] += b.tick(ts + 2)
    for eng in (a, b):
        out[eng.gateway_id] += eng.tick(2000.0)
    va, vb = visit_events(out["gw-a"]), visit_events(out["gw-b"])
    # held for two summary rounds, then A (stronger) announces; B takes over after the move
    assert va == [("visit.started", 15.0, None), ("zone.entered", 15.0, "front"),
                  ("zone.dwell", 75.0, "front"), ("zone.exited", 132.0, "front")]
    assert vb == [("zone.entered", 132.0, "back"), ("zone.dwell", 192.0, "back"),
                  ("zone.exited", 541.0, "back"), ("visit.ended", 541.0, None)]
    ids = {e.data["visit_id"] for e in out["gw-a"] + out["gw-b"] if "visit_id" in e.data}
    assert len(ids) == 1
    ended = next(e for e in out["gw-b"] if e.type == "presence.visit.ended")
    assert ended.data["first_seen"] == 0.0


def test_state_of_gone_devices_is_expired() -> None:
    e = engine()
    for i in range(5000):
        ts = float(i)
        e.feed(wifi(ts, f"dev{i}", -60))
        e.feed(wifi(ts + 0.5, f"dev{i}", -60))
        if i % 100 == 0:
            e.tick(ts)
    assert e.tracked > 300  # the last five minutes of devices are still held
    e.tick(6000.0)
    assert e.tracked == 0


def test_device_cap_bounds_memory() -> None:
    e = engine(max_devices=100)
    for i in range(1000):
        e.feed(wifi(float(i), f"dev{i}", -60))
    assert e.tracked == 100 and e.evicted == 900


def test_zones_may_name_the_gateway_when_drivers_have_no_sensor_id() -> None:
    # config/gateway.example.yaml names gateways in `sensors`; drivers default to sensor "".
    e = engine("gw-door", zones=(ZoneSettings("door", ("gw-door",), -70.0, -76.0),))
    events = run(e, [wifi(float(t), "p", -60) for t in range(0, 60, 5)], until=400.0)
    assert [k for k, _, z in visit_events(events) if z == "door"] == ["zone.entered",
                                                                       "zone.exited"]


def test_a_visit_announced_by_any_peer_counts_as_announced() -> None:
    # gw-c never owned the device but may close the visit: it must know it was announced even
    # when the announcing peer (gw-b) sorts after one that did not announce (gw-a).
    c = engine("gw-c")
    line = {"device": "d", "rssi": -60.0, "last_seen": 10.0, "first_seen": 0.0,
            "visit_id": "v1"}
    c.apply_peer_summary("gw-a", [{**line, "gateway": "gw-a", "announced": False}], 10.0)
    c.apply_peer_summary("gw-b", [{**line, "gateway": "gw-b", "announced": True}], 10.0)
    assert c.peers.visit_of("d") == ("v1", 0.0, True)


def test_cold_start_counts_people_already_inside_without_an_entry() -> None:
    # The gateway (re)starts in an open store: a phone heard from its first minutes is present
    # at once, on ONE strong reading (not after min_sightings, nor walk_in.min_time), and it
    # is not counted as an entry. Its bursts come every 90 s.
    trace = [wifi(float(t), "p", -60) for t in range(0, 600, 90)]
    events = run(engine(), trace, until=1200.0)
    ff = footfalls(events)
    at = {e.time: e.data for e in ff}
    # At 60 s it was heard once: no visit yet (one frame is no visit), but 0.8 people,
    # weighted for the phones like it not heard yet: no gap of its own, so one idle probe
    # interval (60 s), pi = 1 - e^-1 (population.py, cold start).
    assert at[60.0]["devices"]["wifi"] == 1
    assert at[60.0]["present"] == round(0.8 / (1 - math.exp(-1.0)), 2) == 1.27
    assert not [e for e in events if e.type == "presence.visit.started" and e.time < 90.0]
    # At 120 s its visit is open (two readings) and its own gap (90 s) sets the weight.
    assert at[120.0]["present"] == round(0.8 / (1 - math.exp(-120.0 / 90.0)), 2) == 1.09
    assert at[300.0]["present"] == 0.8  # the weights end with the cold-start window
    assert sum(e.data["entries"] for e in ff) == 0 and sum(e.data["exits"] for e in ff) == 1


def test_a_phone_counted_on_one_reading_keeps_it_until_its_second() -> None:
    # A phone probing every 150 s (longer than sighting_window) counted on its first strong
    # reading at a cold start: its second reading starts its visit instead of starting over
    # (the window would otherwise forget the first, and it would never have two).
    events = run(engine(), [wifi(float(t), "slow", -60) for t in range(0, 900, 150)],
                 until=1500.0)
    started = [e.time for e in events if e.type == "presence.visit.started"]
    assert started == [150.0]
    assert all(f.data["devices"]["wifi"] == 1 for f in footfalls(events) if f.time <= 900.0)


def test_one_weak_frame_at_a_cold_start_counts_nobody() -> None:
    # The cold start's one-reading rule needs a strong reading: a phone heard once through a
    # wall at the start, or a strong one heard once after the cold-start window, waits for
    # min_sightings as always.
    weak = footfalls(run(engine(), [wifi(0.0, "weak", -85)], until=60.0))
    assert [f.data["devices"]["wifi"] for f in weak] == [0]
    late = footfalls(run(engine(), [ble(0.0, "other", -50, kind="ibeacon"),
                                    wifi(400.0, "late", -60)], until=480.0))
    assert [(f.time, f.data["devices"]["wifi"]) for f in late][-2:] == [(420.0, 0), (480.0, 0)]


def test_one_strong_frame_is_not_a_walk_in() -> None:
    # A weak device (a neighbouring room) with a single strong reading (a reflection) stays a
    # passer-by: walk_in.min_rssi must hold on min_sightings readings.
    trace = [ble(-900.0, "other", -50, kind="ibeacon")]
    trace += [wifi(float(t), "n", -60 if t == 300 else -85) for t in range(0, 900, 30)]
    ended = [e for e in run(engine(), trace, until=2000.0)
             if e.type == "presence.visit.ended" and e.data["device"] == "n"]
    assert [e.data["classification"] for e in ended] == ["passer_by"]


def test_present_is_smoothed_when_configured() -> None:
    # Smoothing off (default): present follows the devices minute by minute; with 5 minutes
    # of smoothing (the median of five values) every change shows two minutes later.
    trace = [ble(-900.0, "other", -50, kind="ibeacon")]
    trace += [wifi(float(t), "p", -60) for t in range(0, 1500, 10)]
    trace += [wifi(float(t), "q", -60) for t in range(600, 1000, 10)]
    trace.sort(key=lambda o: o.ts)

    def present(smoothing: float = 0.0) -> list[float]:
        e = engine(footfall_smoothing_s=smoothing)
        return [f.data["present"] for f in footfalls(run(e, trace, until=1500.0))
                if 600.0 <= f.time <= 1500.0]
    # q arrives at 600 s and counts once heard for walk_in.count_after (1 min: from the 720 s
    # boundary); it is last heard at 990 s, and by its rhythm (every 10 s, floor
    # exit.min_quiet = 2 min) it has left at the 1140 s boundary, not at its visit end (1290 s).
    assert present() == [0.8, 0.8] + [1.6] * 7 + [0.8] * 7
    assert present(300.0) == [0.8] * 4 + [1.6] * 7 + [0.8] * 5
