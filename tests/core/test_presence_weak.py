"""Heard, not inside: a device that stays weak for long is in a neighbouring room.

Scripted traces with known truth: a device behind a wall (steady, just above walk_in.min_rssi
for two hours) stops counting in `present` after `walk_in.weak_max_presence`; a visitor who
came near the sensor once keeps counting at the same weak level; the visit events are kept.
"""

from __future__ import annotations

from presence_gateway.core.events import Event
from presence_gateway.core.model import Observation
from presence_gateway.core.presence.config import read
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.yamlread import Reader, load_yaml
from tests.core.presence_helpers import ble, placed, run, wifi

WARM = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]


def engine(**kw: object) -> PresenceEngine:
    return PresenceEngine(placed(**kw),
                          gateway_id="gw-1", store_id="s1")


def present(events: list[Event]) -> dict[float, float]:
    return {e.time: e.data["present"] for e in events if e.type == "presence.footfall"}


def behind_wall(device: str = "wall") -> list[Observation]:
    return [wifi(float(t), device, -68) for t in range(0, 7200, 60)]


def test_a_steady_weak_device_stops_counting_after_half_an_hour() -> None:
    events = run(engine(), WARM + behind_wall(), until=7200.0)
    p = present(events)
    assert p[600.0] == 0.8 and p[1740.0] == 0.8  # a walk-in (>= -70 dBm for 5 min)
    assert p[1860.0] == 0.0 and p[7140.0] == 0.0  # weak for 30 min: a neighbouring room
    # The visit itself goes on: no visit.ended before the device falls silent.
    assert not [e for e in events if e.type == "presence.visit.ended" and e.time < 7000.0]
    # Off (a limit longer than the trace, and no placement watch: the store-looks-empty form
    # below is the same rule): counted all along, the old behaviour.
    p_off = present(run(engine(weak_max_presence_s=10_000.0, placement_max_offset_db=0.0),
                        WARM + behind_wall(), until=7200.0))
    assert p_off[7140.0] == 0.8


def test_in_a_store_that_looks_empty_a_weak_device_counts_for_walk_in_min_time() -> None:
    # The behind-wall device alone: the sensor's first window (30 min, 30 readings) closes at
    # 1800 s with too few readings for an occupied store, so from then on the store looks
    # empty. A second weak device, in the corridor from 2400 s, then counts only until it has
    # been around for walk_in.min_time (5 min), not for weak_max_presence (30 min): that wait
    # is for seated people who read weak in a busy room.
    corridor = [wifi(float(t), "corridor", -67) for t in range(2400, 6000, 60)]
    trace = sorted(WARM + behind_wall() + corridor, key=lambda o: o.ts)
    p = present(run(engine(), trace, until=7200.0))
    assert p[2640.0] == 0.8 and p[2700.0] == 0.8  # counted from walk_in.count_after
    assert p[2760.0] == 0.0  # 5 min after its first reading: the corridor's
    # A device that comes near (-60 dBm: not weak) counts throughout in the same empty store.
    near = [wifi(float(t), "near", -60) for t in range(2400, 6000, 60)]
    p = present(run(engine(), sorted(WARM + behind_wall() + near, key=lambda o: o.ts),
                    until=7200.0))
    assert p[2760.0] == 0.8 and p[5940.0] == 0.8
    # Without the placement watch, the corridor device counts for the weak rule's 30 min.
    p_off = present(run(engine(placement_max_offset_db=0.0), trace, until=7200.0))
    assert p_off[2760.0] == 0.8 and p_off[4140.0] == 0.8 and p_off[4260.0] == 0.0


def test_a_visitor_who_came_near_once_keeps_counting_at_the_same_weak_level() -> None:
    trace = [o for o in behind_wall("v") if not 600 <= o.ts < 900]
    trace += [wifi(float(t), "v", -50) for t in range(600, 900, 20)]  # at the counter
    trace.sort(key=lambda o: o.ts)
    p = present(run(engine(), WARM + trace, until=7200.0))
    assert p[1860.0] == 0.8 and p[7140.0] == 0.8


def test_weak_keys_are_read_from_config() -> None:
    text = "presence:\n  walk_in:\n    weak_max_presence: 45m\n    weak_margin_db: 4\n"
    data, lines = load_yaml(text, "gw.yaml")
    r = Reader("gw.yaml", data, lines)
    s = read(r, "presence")
    r.check()
    assert (s.weak_max_presence_s, s.weak_margin_db) == (2700.0, 4.0)
