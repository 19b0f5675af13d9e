"""Placement: a per-sensor RSSI offset learnt from the sensor's own Wi-Fi readings.

The rule (core/presence/placement.py): the 90th percentile of each window of readings, from
windows that look like an occupied room at the reference scale, brought to the reference
level; the measured effect on the Brno days shifted by +-6 dB is in docs/presence.md.
"""

from __future__ import annotations

import random

import pytest

from presence_gateway.core.events import Event
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.placement import (
    MIN_READINGS,
    MIN_WINDOWS,
    WINDOW_READINGS,
    PlacementLearner,
)
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.errors import ConfigError
from tests.core.presence_helpers import ble, run, wifi
from tests.core.test_presence_config import read


def occupied(shift: float, n: int, rnd: random.Random) -> list[float]:
    """Readings of an occupied room heard at the reference spot moved by `shift` dB: most
    devices far (-85..-60), a fifth near the sensor (-56..-46): p90 about -51 unshifted."""
    out = []
    for _ in range(n):
        base = rnd.uniform(-56.0, -46.0) if rnd.random() < 0.2 else rnd.uniform(-85.0, -60.0)
        out.append(base + shift)
    return out


def feed(learner: PlacementLearner, readings: list[float], sensor: str = "s") -> float:
    off = 0.0
    for i, x in enumerate(readings):
        off = learner.observe(sensor, x, float(i))
    return off


@pytest.mark.parametrize("shift", [-6.0, 6.0, -8.0])
def test_a_shifted_sensor_learns_the_opposite_offset(shift: float) -> None:
    learner = PlacementLearner()
    off = feed(learner, occupied(shift, WINDOW_READINGS * 8, random.Random(1)))
    assert abs(off + shift) <= 1.0


def test_the_reference_spot_reads_as_itself() -> None:
    learner = PlacementLearner()
    assert feed(learner, occupied(0.0, WINDOW_READINGS * 8, random.Random(2))) == 0.0
    # within the dead band (3 dB): no offset either
    assert feed(PlacementLearner(), occupied(2.0, WINDOW_READINGS * 8, random.Random(3))) == 0.0


def test_nothing_is_applied_before_enough_windows() -> None:
    learner = PlacementLearner()
    readings = occupied(6.0, WINDOW_READINGS * MIN_WINDOWS, random.Random(4))
    assert feed(learner, readings) == 0.0  # the last window is still open


def test_an_empty_room_teaches_nothing() -> None:
    # The empty Brno morning: readings -95..-70, p90 about -74: 23 dB below the reference,
    # beyond max_offset_db: ignored, not read as a cold sensor.
    rnd = random.Random(5)
    learner = PlacementLearner()
    assert feed(learner, [rnd.uniform(-95.0, -70.0) for _ in range(WINDOW_READINGS * 10)]) == 0.0
    assert learner.offsets() == {"s": 0.0}


def test_off_and_per_sensor() -> None:
    assert not PlacementLearner(max_offset_db=0.0).enabled
    learner = PlacementLearner()
    feed(learner, occupied(6.0, WINDOW_READINGS * 8, random.Random(6)), sensor="hot")
    feed(learner, occupied(0.0, WINDOW_READINGS * 8, random.Random(7)), sensor="ref")
    offs = learner.offsets()
    assert offs["ref"] == 0.0 and offs["hot"] <= -5.0


def present(events: list[Event]) -> dict[float, float]:
    return {e.time: e.data["present"] for e in events if e.type == "presence.footfall"}


def test_the_engine_applies_the_learnt_offset_before_the_walk_in_threshold() -> None:
    # A crowd heard 8 dB cold teaches the sensor about +8 dB; then a phone at -75 dBm (-67
    # at the reference scale, above walk_in.min_rssi -70) counts; without learning it is out.
    rnd = random.Random(8)
    crowd = [wifi(float(i) * 0.5, f"c{i % 300}", round(x))
             for i, x in enumerate(occupied(-8.0, WINDOW_READINGS * 6, rnd))]
    t0 = crowd[-1].ts + 1.0
    phone = [wifi(t0 + t, "p", -75) for t in range(0, 600, 30)]
    warm = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]
    on = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    off = PresenceEngine(PresenceSettings(placement_max_offset_db=0.0), gateway_id="gw",
                         store_id="s")
    run(on, warm + crowd, until=t0)
    run(off, warm + crowd, until=t0)
    assert on._placement.offsets()["gw"] in (7.0, 8.0, 9.0)
    run(on, phone, until=t0 + 600)
    run(off, phone, until=t0 + 600)
    assert on._units["p"].inside and not off._units["p"].inside


def test_a_learnt_offset_moves_what_was_heard_before_it() -> None:
    # A phone heard while the sensor still read 8 dB hot keeps no hot peak once the offset is
    # learnt: its smoothed RSSI and peak move with the offset (units.py `rebase`), so the
    # weak rule judges it at the reference scale for the rest of its visit.
    rnd = random.Random(9)
    crowd = [wifi(float(i) * 0.5, f"c{i % 300}", round(x))
             for i, x in enumerate(occupied(8.0, WINDOW_READINGS * 6, rnd))]
    phone = [wifi(float(t) + 0.25, "p", -60) for t in range(0, int(crowd[-1].ts), 20)]
    eng = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    run(eng, sorted(crowd + phone, key=lambda o: o.ts), until=crowd[-1].ts)
    off = eng._placement.offsets()["gw"]
    assert off in (-9.0, -8.0, -7.0)
    u = eng._units["p"]
    assert u.off == off
    assert u.max_x <= -60.0 + off + 1.0, "the peak heard before the offset moved with it"
    assert abs(u.x - (-60.0 + off)) < 1.0


def test_the_offset_learnt_one_day_holds_the_next_morning() -> None:
    # A sensor 8 dB hot learns its offset in a busy day; two days later, in the empty
    # morning, a device in the corridor heard at -64 dBm (-72 at the reference scale, below
    # walk_in.min_rssi -70) is not counted by that gateway, where a gateway starting that
    # morning (nothing learnt yet: an empty room teaches nothing) takes it in (it counts for
    # walk_in.min_time, its sensor being cautious: see the tests below).
    rnd = random.Random(10)
    crowd = [wifi(float(i) * 0.5, f"c{i % 300}", round(x))
             for i, x in enumerate(occupied(8.0, WINDOW_READINGS * 6, rnd))]
    morning = crowd[-1].ts + 2 * 86400.0
    corridor = [wifi(morning + t, "corridor", -64) for t in range(0, 1800, 45)]
    warm = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    run(warm, crowd, tick_every=10.0, until=crowd[-1].ts)
    learnt = warm._placement.offsets()["gw"]
    assert learnt in (-9.0, -8.0, -7.0)
    fresh = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    seen = run(warm, corridor, tick_every=10.0, until=morning + 1800)
    run(fresh, corridor, tick_every=10.0, until=morning + 1800)
    assert warm._placement.offsets()["gw"] == learnt, "the day's roll keeps what was learnt"
    assert fresh._units["corridor"].inside and not warm._units["corridor"].inside
    # (the first tick also reports the busy day's last minute: only the morning is asked)
    assert max(v for t, v in present(seen).items() if t > morning) == 0.0


def test_a_walk_test_offset_wins_over_learning() -> None:
    eng = PresenceEngine(PresenceSettings(rssi_offsets=(("gw", 2.0),)), gateway_id="gw",
                         store_id="s")
    rnd = random.Random(9)
    run(eng, [wifi(float(i), f"c{i % 300}", round(x))
              for i, x in enumerate(occupied(-8.0, WINDOW_READINGS * 6, rnd))],
        until=WINDOW_READINGS * 6 - 1.0)
    # The learner watches the sensor (whether its store looks empty) but its own estimate
    # (+8 here) is not applied: every reading gets the walk test's +2 dB.
    assert eng.wifi_placement["gw"] == {"offset_db": 2.0, "source": "configured",
                                        "cautious": False}
    assert eng._units and all(u.off == 2.0 for u in eng._units.values())


# -- a sensor not learnt yet -----------------------------------------------------------------


def presents(events: list[Event], start: float, end: float) -> list[float]:
    return [v for t, v in sorted(present(events).items()) if start < t <= end]


def test_a_new_sensors_weak_unit_counts_only_until_walk_in_min_time() -> None:
    # A hot sensor's first empty morning: a device in the corridor heard at -61 dBm (-69 at
    # the reference scale, 8 dB hot), every 30 s for 40 min. It is above the weak rule's
    # -64, so a sensor of known placement counts it for its whole stay (the weak rule waits
    # 30 min for such a unit) ...
    warm = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]  # no cold start
    corridor = [wifi(float(t), "corridor", -61) for t in range(0, 2400, 30)]
    known = PresenceEngine(PresenceSettings(rssi_offsets=(("gw", 0.0),)), gateway_id="gw",
                           store_id="s")
    assert min(presents(run(known, warm + corridor, until=2400.0), 120.0, 2400.0)) == 0.8
    # ... while a new sensor, whose scale nothing has taught (one device, fewer readings than
    # a window needs), holds a unit that never came placement.max_offset_db above that level
    # (-55) only for walk_in.min_time (5 min), then leaves it out.
    fresh = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    seen = presents(run(fresh, warm + corridor, until=2400.0), 0.0, 2400.0)
    assert seen[1:5] == [0.8] * 4, "counted from walk_in.count_after to walk_in.min_time"
    assert seen[5:] == [0.0] * len(seen[5:])
    assert fresh._placement.unsure() == {"gw"}
    # Near the sensor (-54 dBm) it is counted throughout by the same new sensor.
    near = [wifi(float(t), "near", -54) for t in range(0, 2400, 30)]
    fresh = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    assert min(presents(run(fresh, warm + near, until=2400.0), 120.0, 2400.0)) == 0.8


def test_a_busy_store_ends_the_caution_before_its_first_window_closes() -> None:
    # An occupied room at the reference scale: once the open window holds MIN_READINGS
    # readings whose p90 is within max_offset_db of the reference, the sensor is no longer
    # unsure, though no window has closed and no offset is applied.
    rnd = random.Random(11)
    learner = PlacementLearner()
    readings = occupied(0.0, WINDOW_READINGS // 2, rnd)
    for i, x in enumerate(readings[:MIN_READINGS - 1]):
        learner.observe("s", round(x), float(i))
    assert learner.unsure() == {"s"}
    for i, x in enumerate(readings[MIN_READINGS - 1:]):
        learner.observe("s", round(x), float(MIN_READINGS + i))
    assert learner.unsure() == frozenset()
    assert learner.describe({})["s"] == {"offset_db": 0.0, "source": "learning",
                                         "cautious": False}
    # An empty room (p90 about -74, 23 dB low) never ends it: it cannot tell a cold sensor.
    empty = PlacementLearner()
    for i in range(WINDOW_READINGS * 4):
        empty.observe("e", round(rnd.uniform(-95.0, -70.0)), float(i))
    assert empty.unsure() == {"e"}
    assert empty.describe({})["e"]["cautious"] is True


def test_one_accepted_window_ends_it_for_good() -> None:
    learner = PlacementLearner()
    feed(learner, occupied(6.0, WINDOW_READINGS * 4, random.Random(12)))
    assert learner.describe({})["s"]["source"] == "learnt"
    # then a night of empty-room readings: the sensor stays known
    rnd = random.Random(13)
    for i in range(WINDOW_READINGS * 4):
        learner.observe("s", round(rnd.uniform(-95.0, -70.0)), 1e5 + i)
    assert learner.unsure() == frozenset()
    assert learner.describe({})["s"]["offset_db"] in (-7.0, -6.0, -5.0)


def test_configured_sensors_ble_and_learning_off_are_never_cautious() -> None:
    learner = PlacementLearner()
    learner.observe("walked", -70.0, 0.0)  # learnt before a walk test's offset was set
    learner.observe("new", -70.0, 0.0)
    assert learner.unsure({"walked"}) == {"new"}
    assert learner.describe({"walked": 2.0})["walked"] == {
        "offset_db": 2.0, "source": "configured", "cautious": False}
    off = PlacementLearner(max_offset_db=0.0)
    off.observe("new", -70.0, 0.0)
    assert off.unsure() == frozenset()
    learner.configure(-51.0, 0.0)  # a reload that turns learning off
    assert not learner.enabled and learner.unsure() == frozenset()
    # A BLE phone at -61 on a new sensor counts throughout: BLE placement is not learnt.
    warm = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]
    phone = [ble(float(t), "phone", -61) for t in range(0, 1800, 10)]
    fresh = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    assert min(presents(run(fresh, warm + phone, until=1800.0), 120.0, 1800.0)) == 0.8


def test_a_snapshot_older_than_the_empty_store_rule_thaws() -> None:
    # A sensor pickled before `_Sensor.last` existed (its state without it; a compiled class
    # cannot lose an attribute, so the older state is made from the pickled one): it thaws
    # with the last window unknown (not empty), its learnt windows and offset kept.
    import pickle

    from presence_gateway.core.presence import placement
    learner = PlacementLearner()
    feed(learner, occupied(6.0, WINDOW_READINGS * 4, random.Random(14)))
    st = learner._sensors["s"]
    state = st.__getstate__()
    assert isinstance(state, dict) and "last" in state
    del state["last"]
    got = placement._Sensor.__new__(placement._Sensor)
    got.__setstate__(pickle.loads(pickle.dumps(state)))
    assert got.last == float("inf")
    assert list(got.accepted) == list(st.accepted) and got.offset == st.offset
    learner._sensors["s"] = got
    assert learner.states({}) == (frozenset(), frozenset())


def test_config_keys_and_errors_with_line() -> None:
    s = read("presence:\n  placement: {reference_p90: -55, max_offset_db: 0}\n")
    assert s.placement_reference_p90 == -55.0 and s.placement_max_offset_db == 0.0
    assert read("").placement_max_offset_db == 9.0
    with pytest.raises(ConfigError) as exc:
        read("presence:\n  placement:\n    max_offset_db: 50\n")
    assert "gw.yaml:3 presence.placement.max_offset_db" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        read("presence:\n  placement:\n    reference: -51\n")
    assert "gw.yaml:3" in str(exc.value) and "reference" in str(exc.value)


def test_a_reload_that_turns_learning_off_stops_it_and_the_caution() -> None:
    eng = PresenceEngine(PresenceSettings(), gateway_id="gw", store_id="s")
    run(eng, [wifi(0.0, "corridor", -61)])
    assert eng.wifi_placement["gw"]["cautious"] is True
    eng.reconfigure(PresenceSettings(placement_max_offset_db=0.0), 1.0)
    assert not eng._placement.enabled and eng._placement.unsure() == frozenset()
    assert eng.wifi_placement["gw"]["cautious"] is False
    eng.reconfigure(PresenceSettings(), 2.0)  # and back on: what was learnt is still there
    assert eng._placement.enabled and eng.wifi_placement["gw"]["cautious"] is True
