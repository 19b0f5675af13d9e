"""Exits from a device's own probing rhythm: scripted traces with known truth.

A unit stops counting in `present` once it has been silent for `exit.rhythm_factor` times its
usual gap between bursts (never sooner than `exit.min_quiet`); its visit still ends only after
`visit_timeout`, so a phone that merely went quiet for a while keeps its visit.
"""

from __future__ import annotations

from presence_gateway.core.events import Event
from presence_gateway.core.presence.config import PresenceSettings, read
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.yamlread import Reader, load_yaml
from tests.core.presence_helpers import ble, placed, run, wifi

# Another device heard long before: the gateway is not cold-starting when the phone arrives.
WARM = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]


def engine(**kw: object) -> PresenceEngine:
    return PresenceEngine(placed(**kw),
                          gateway_id="gw-1", store_id="s1")


def present(events: list[Event]) -> dict[float, float]:
    return {e.time: e.data["present"] for e in events if e.type == "presence.footfall"}


def ended(events: list[Event]) -> list[float]:
    return [e.time for e in events if e.type == "presence.visit.ended"
            and e.data["device"] == "p"]


def test_a_phone_probing_every_minute_leaves_the_count_after_three_silent_intervals() -> None:
    # Bursts (two probes 1 s apart: one gap of 59 s between bursts) every 60 s from 0 to
    # 1200 s, then the person leaves.
    trace = WARM + [wifi(float(t + d), "p") for t in range(0, 1201, 60) for d in (0, 1)]
    events = run(engine(), trace, until=2000.0)
    p = present(events)
    assert p[1320.0] == 0.8  # silent 119 s: under 3 x 59 s, still here
    assert p[1440.0] == 0.0  # silent 239 s: gone, a minute before the visit timeout
    assert ended(events) == [1501.0]  # the visit itself still ends at last_seen + timeout
    # With the rhythm rule off (factor so large that visit_timeout decides), the phone is
    # counted until its visit ends: the old 5-minute lag.
    p_off = present(run(engine(exit_rhythm_factor=100.0), trace, until=2000.0))
    assert p_off[1440.0] == 0.8 and p_off[1560.0] == 0.0


def test_a_quick_scanner_going_quiet_for_under_the_floor_still_counts() -> None:
    # Bursts every 10 s (screen on, active scan), then 110 s of silence (screen off): under
    # exit.min_quiet (2 min), so the person is still counted although 110 s is 11 intervals.
    trace = WARM + [wifi(float(t), "p") for t in range(0, 611, 10)]
    trace += [wifi(float(t), "p") for t in range(720, 1000, 60)]
    p = present(run(engine(), trace, until=1000.0))
    assert p[660.0] == 0.8 and p[720.0] == 0.8


def test_a_phone_back_after_a_silence_is_counted_again_in_the_same_visit() -> None:
    # Every 60 s, then 280 s of silence (out of the count after 3 intervals), then back:
    # counted again at once, one visit (the silence is shorter than visit_timeout).
    trace = WARM + [wifi(float(t), "p") for t in range(0, 601, 60)]
    trace += [wifi(float(t), "p") for t in range(880, 1500, 60)]
    events = run(engine(), trace, until=2500.0)
    p = present(events)
    assert p[720.0] == 0.8 and p[840.0] == 0.0 and p[960.0] == 0.8
    assert sum(1 for e in events if e.type == "presence.visit.started") == 1
    assert len(ended(events)) == 1


def test_exit_keys_are_read_from_config() -> None:
    data, lines = load_yaml("presence:\n  exit:\n    rhythm_factor: 4\n    min_quiet: 90s\n",
                            "gw.yaml")
    r = Reader("gw.yaml", data, lines)
    s = read(r, "presence")
    r.check()  # raises on any error
    assert (s.exit_rhythm_factor, s.exit_min_quiet_s) == (4.0, 90.0)
    assert (PresenceSettings().exit_rhythm_factor, PresenceSettings().exit_min_quiet_s) == (
        3.0, 120.0)
