"""Channel hopping: the engine corrects for the share of bursts a hopping radio catches.

Scripted traces with known truth: one phone probing every 60 s on one channel, heard through a
radio that spends a third of its time there (every third burst caught, as the 3-channel variant of
the Brno days), and one that sweeps every channel (heard at almost every burst on another channel;
caught as often as the plan's timing lets a 0.2 s scan be caught). The model is
core/presence/hopping.py; the measured effect is in docs/presence.md "Channel hopping".
"""

from __future__ import annotations

import dataclasses

import pytest

from presence_gateway.core.events import Event
from presence_gateway.core.model import Observation
from presence_gateway.core.presence.hopping import (
    FIXED,
    CatchModel,
    ChannelPlan,
    PlanInference,
    channel_bit,
    channels_probed,
    expected_max,
    few_channels_odds,
    peak_relief,
    sweep_catch,
)
from presence_gateway.core.presence.sessions import PresenceEngine
from tests.core.presence_helpers import ble, placed, run, wifi

WARM = [ble(-3600.0, "shelf-beacon", -50, kind="ibeacon")]
PLAN3 = ChannelPlan((1, 6, 11), 0.25)


def engine(plan: ChannelPlan | None, **kw: object) -> PresenceEngine:
    return PresenceEngine(placed(**kw),
                          gateway_id="gw-1", store_id="s1", plan=plan)


def on(obs: Observation, channel: int) -> Observation:
    return dataclasses.replace(obs, channel=channel)


def present(events: list[Event]) -> dict[float, float]:
    return {e.time: e.data["present"] for e in events if e.type == "presence.footfall"}


def test_plan_values() -> None:
    assert FIXED.size == 1 and FIXED.duty == 1.0
    assert PLAN3.size == 3 and PLAN3.duty == pytest.approx(1 / 3)
    assert PLAN3.mask == channel_bit(1) | channel_bit(6) | channel_bit(11)
    assert PLAN3.heard_on(channel_bit(6)) == 1
    assert PLAN3.heard_on(channel_bit(6) | channel_bit(11) | channel_bit(3)) == 2  # 3: not in it
    assert PLAN3.heard_on(0) == 1  # never heard on a plan channel: at least one
    assert channel_bit(None) == 0 and channel_bit(0) == 0 and channel_bit(500) == 0


def test_channels_probed_from_the_distinct_channels_heard() -> None:
    assert channels_probed(1, 1, 10) == 1
    assert channels_probed(1, 20, 10) == 1  # twenty bursts, all on one channel
    assert channels_probed(3, 3, 10) == 10  # a new channel at every burst: sweeps them all
    assert channels_probed(2, 3, 10) == 3  # 2 distinct in 3 is expected of 3 channels
    assert channels_probed(6, 10, 10) == 9  # 8 would be expected on 5.7, 9 on 6.2
    assert channels_probed(10, 10, 10) == 10


def test_catch_model_uses_the_store_mean_until_a_unit_has_its_own_readings() -> None:
    model = CatchModel(ChannelPlan(tuple(range(1, 11)), 0.1))
    assert model.p(channel_bit(2), 1) == pytest.approx(0.1)  # the prior: 1 / n
    # three bursts on three channels: a sweeping phone, caught as often as the plan's timing
    # lets a sweep be caught
    assert model.p(channel_bit(2) | channel_bit(5) | channel_bit(9), 3) == model.sweep_p
    for _ in range(30):
        model.learn(1.0)  # the store's phones sweep
    assert model.mean_p > 0.9
    assert model.p(channel_bit(2), 1) == pytest.approx(model.mean_p)
    assert CatchModel(FIXED).p(channel_bit(2), 1) == 1.0


def test_plan_inference_from_the_channels_frames_were_heard_on() -> None:
    inf = PlanInference(min_frames=3)
    assert [inf.observe(2) for _ in range(3)][-1] == ChannelPlan((2,))
    assert inf.observe(7) is None and inf.observe(7) is None  # two frames: a stray tag
    assert inf.observe(7) == ChannelPlan((2, 7))
    assert inf.observe(None) is None and inf.plan.size == 2


def test_an_engine_without_a_plan_learns_it_from_a_recordings_channels() -> None:
    eng = engine(None)
    trace = [on(wifi(float(t), f"d{t % 5}"), 1 + (t % 3) * 5) for t in range(30)]
    run(eng, trace, until=40.0)
    assert eng._plans.plan_of("gw-1").channels == (1, 6, 11)


def test_each_sensor_learns_its_own_plan() -> None:
    # Two fixed sniffers on channels 1 and 6 (sensors a and b) are two fixed radios, not one
    # two-channel hopper; a third sensor hops over 1/6/11.
    eng = engine(None)
    trace = []
    for t in range(30):
        trace.append(on(wifi(float(t), f"d{t % 5}", sensor="a"), 1))
        trace.append(on(wifi(t + 0.1, f"d{t % 5}", sensor="b"), 6))
        trace.append(on(wifi(t + 0.2, f"d{t % 5}", sensor="c"), 1 + (t % 3) * 5))
    run(eng, trace, until=40.0)
    assert eng._plans.plan_of("a").size == 1 and eng._plans.plan_of("b").size == 1
    assert eng._plans.plan_of("c").channels == (1, 6, 11)
    assert eng._horizon == 3 * 300.0  # the longest stretch: the hopper's n


def single_channel_phone() -> list[Observation]:
    """A phone probing every 60 s on channel 6 for 40 min, heard through PLAN3 at every third
    burst (the radio is on channel 6 a third of the time), then gone."""
    return WARM + [on(wifi(float(t), "p"), 6) for t in range(0, 2401, 180)]


def test_a_plan_keeps_a_sparsely_heard_phone_in_the_count() -> None:
    trace = single_channel_phone()
    fixed = present(run(engine(FIXED), trace, until=3600.0))
    hop = present(run(engine(PLAN3), trace, until=3600.0))
    # Read as a fixed radio, the 3-minute gaps exceed the visit timeout's rhythm floor and
    # the sighting rules: the phone is counted only now and then.
    minutes = [t for t in fixed if 600 <= t <= 2400]
    assert sum(fixed[t] > 0 for t in minutes) < len(minutes) / 2
    # With the plan (p = 1/3: windows x 3) it counts through its stay ...
    assert all(hop[t] == 0.8 for t in minutes)
    # ... and leaves after its own rhythm (3 x 180 s), not later than the stretched timeout.
    assert hop[2400.0 + 600.0] == 0.0


def test_one_reading_is_enough_evidence_at_a_third_of_the_bursts() -> None:
    # Two strong readings are asked of a fixed radio; at p = 1/3 one is (ceil(2 / 3)).
    trace = WARM + [on(wifi(0.0, "p", -50), 6)] + [on(wifi(float(t), "p", -80), 6)
                                                   for t in range(180, 1201, 180)]
    hop = present(run(engine(PLAN3), trace, until=1300.0))
    fixed = present(run(engine(FIXED), trace, until=1300.0))
    assert hop[600.0] == 0.8
    assert fixed[600.0] == 0.0


def test_a_phone_that_sweeps_every_channel_is_stretched_only_by_the_plans_timing() -> None:
    # Heard on a new channel of the plan at each burst: it sweeps, so after three bursts p is
    # the share of sweeps the plan catches (sweep_catch), not 1/3, and it leaves the count
    # after its own rhythm as with a fixed radio (no 3x longer windows).
    trace = WARM + [on(wifi(float(t), "p"), (1, 6, 11)[(t // 60) % 3])
                    for t in range(0, 1201, 60)]
    eng = engine(PLAN3)
    run(eng, trace, until=1210.0)
    assert eng._units["p"].stretch == pytest.approx(1 / sweep_catch(PLAN3))
    p = present(run(engine(PLAN3), trace, until=2400.0))
    assert p[1260.0] == 0.8 and p[1500.0] == 0.0  # as the fixed-radio test in test_presence_exit


def test_the_share_of_sweeps_a_plan_catches() -> None:
    assert sweep_catch(FIXED) == 1.0
    assert sweep_catch(ChannelPlan((1, 6, 11))) == 1.0  # learnt from a recording: no dwell
    # 1/6/11 at 250 ms: a 0.2 s scan that starts while the radio is late on 11 reaches 1
    # and 6 after the radio has moved on; a quarter of the sweeps are missed
    assert 0.65 < sweep_catch(PLAN3) < 0.8
    assert sweep_catch(ChannelPlan((1, 6, 11), 1.0)) > 0.9  # longer dwell: fewer misses
    # channels in the scan's own order: the radio runs ahead of the scan, which catches up
    assert sweep_catch(ChannelPlan(tuple(range(1, 11)), 0.25)) > 0.9
    # a scan 10x slower than measured misses more of the same plan
    assert sweep_catch(PLAN3, step_s=0.2) < sweep_catch(PLAN3)


def test_a_fixed_radio_is_unchanged_by_the_plan_machinery() -> None:
    trace = WARM + [wifi(float(t + d), "p") for t in range(0, 1201, 60) for d in (0, 1)]
    assert present(run(engine(None), trace, until=2000.0)) == \
        present(run(engine(FIXED), trace, until=2000.0))


def test_the_live_radio_plan_reaches_the_engine_and_a_recording_learns_it() -> None:
    from presence_gateway.core.config import parse_config
    from presence_gateway.runtime.assembly import Mode, channel_plan

    cfg = parse_config("drivers:\n  - {type: wifi_monitor, interface: wlan1, "
                       "channels: [1, 6, 11], dwell: 250ms}\n", "gw.yaml")
    assert channel_plan(cfg, Mode.LIVE) == ChannelPlan((1, 6, 11), 0.25)
    assert channel_plan(cfg, Mode.REPLAY) is None  # a recording: from its frames' channels
    every = parse_config("drivers:\n  - {type: wifi_monitor, interface: wlan1, "
                         "channels: all}\n", "gw.yaml")
    assert channel_plan(every, Mode.LIVE) is None


def test_a_restart_keeps_a_learnt_plan_and_a_live_radio_keeps_its_own() -> None:
    import pickle

    eng = engine(None)
    run(eng, [on(wifi(float(t), f"d{t % 5}"), 1 + (t % 3) * 5) for t in range(30)], until=40.0)
    frozen = pickle.loads(pickle.dumps(eng))
    learnt = engine(None)
    learnt.adopt(frozen)
    assert learnt._plans.plan_of("gw-1").channels == (1, 6, 11) and learnt._plans.given is None
    assert learnt._horizon == 3 * 300.0
    live = engine(ChannelPlan((1, 6), 0.1))
    live.adopt(frozen)
    assert live._plans.given == ChannelPlan((1, 6), 0.1) and live._horizon == 2 * 300.0


def test_the_cold_start_window_is_stretched_too() -> None:
    # A phone inside when the gateway starts is first heard 1 / p times later on average: at
    # p = 1/3 one first heard at 10 min is still a cold-start device (5 min x 3), counted at
    # once and not as an entry; a fixed radio reads it as a new arrival.
    trace = [ble(0.0, "shelf-beacon", -50, kind="ibeacon"),
             on(wifi(600.0, "p", -55), 6), on(wifi(601.0, "p", -55), 6)]
    hop = run(engine(PLAN3), trace, until=700.0)
    fixed = run(engine(FIXED), trace, until=700.0)
    assert present(hop)[660.0] == 0.8 and present(fixed)[660.0] == 0.0
    assert all(e.data["entries"] == 0 for e in hop if e.type == "presence.footfall")


def test_a_visit_ends_at_its_own_stretch_behind_a_longer_one() -> None:
    # "slow" probes on one channel only (p = 1/3: timeout x 3) and is first in expiry order;
    # "sweep" is heard on every channel (p = 1) and goes quiet later: its visit ends at its
    # own last + 5 min, in that footfall interval, not when "slow" expires 15 min after it.
    trace = WARM + [on(wifi(float(t), "slow", -50), 6) for t in range(0, 301, 60)]
    trace += [on(wifi(float(t), "sweep", -50), (1, 6, 11)[(t // 30) % 3])
              for t in range(30, 331, 30)]
    events = run(engine(PLAN3), sorted(trace, key=lambda o: o.ts), until=2000.0)
    ended = {e.data["device"]: e.time for e in events if e.type == "presence.visit.ended"}
    emitted_at = next(i for i, e in enumerate(events)
                      if e.type == "presence.visit.ended" and e.data["device"] == "sweep")
    footfall_before = [e.time for e in events[:emitted_at] if e.type == "presence.footfall"]
    sweep_end = 330.0 + 300.0 / sweep_catch(PLAN3)  # p of a sweeping phone under PLAN3
    assert ended["sweep"] == pytest.approx(sweep_end)
    assert ended["slow"] == 300.0 + 900.0
    assert footfall_before[-1] < sweep_end + 60.0  # at its own boundary, not at 1200 s


PLAN10 = ChannelPlan(tuple(range(1, 11)), 0.25)


def test_a_bursts_probes_count_as_one_caught_burst() -> None:
    # A sweeping phone: every minute a burst of four probes within 0.6 s, all heard on the
    # channel the radio dwells on then (a new one each burst). Counted per reading, the first
    # burst alone (four readings on one channel) read as a one-channel phone (p = 1/10,
    # windows x 10); counted per burst, three bursts on three channels say it sweeps (p: the
    # share of sweeps the plan catches).
    trace = WARM + [on(wifi(t + d, "p"), 1 + (int(t) // 60) % 10)
                    for t in (0.0, 60.0, 120.0) for d in (0.0, 0.2, 0.4, 0.6)]
    eng = engine(PLAN10)
    run(eng, trace, until=130.0)
    unit = eng._units["p"]
    assert unit.chans_n == 3
    assert unit.stretch == pytest.approx(1 / sweep_catch(PLAN10))
    assert unit.stretch < 1.1


def test_expected_max_and_the_peak_relief() -> None:
    assert expected_max(1) == 0.0
    assert expected_max(10) == pytest.approx(1.539, abs=0.02)  # tabulated order statistic
    assert expected_max(100) == pytest.approx(2.508, abs=0.02)
    assert peak_relief(5, 1.0, 5.0) == 0.0  # a fixed radio: no relief
    # At p = 1/10 the strongest of 3 readings stands for the strongest of 30: ~6 dB lower.
    assert peak_relief(3, 10.0, 5.0) == pytest.approx(5 * (expected_max(30) - expected_max(3)))
    assert 5.0 < peak_relief(3, 10.0, 5.0) < 7.0
    # More readings: the two maxima draw closer; a sparser radio: further apart.
    assert peak_relief(30, 10.0, 5.0) < peak_relief(3, 10.0, 5.0)
    assert peak_relief(3, 3.0, 5.0) < peak_relief(3, 10.0, 5.0)


def test_a_sparsely_heard_phone_is_judged_on_the_peak_a_fixed_radio_would_have_seen() -> None:
    # One channel of ten, a burst every 3 minutes at -73 dBm: never at the walk-in level
    # (-70) as heard, but the strongest of the ten times as many bursts a fixed radio would
    # have caught is expected ~6 dB higher. Counted under the plan, not by a fixed radio.
    trace = WARM + [on(wifi(float(t), "p", -73), 6) for t in range(0, 2401, 180)]
    hop = present(run(engine(PLAN10), trace, until=2500.0))
    fixed = present(run(engine(FIXED), trace, until=2500.0))
    assert hop[1800.0] == 0.8
    assert max(fixed.values()) == 0.0


def test_the_odds_of_few_channels_for_a_sweeping_phone() -> None:
    # c bursts of a phone that sweeps all n channels land on uniform channels: exact values.
    assert few_channels_odds(1, 3, 10) == pytest.approx(0.01)
    assert few_channels_odds(2, 3, 10) == pytest.approx(1 - 10 * 9 * 8 / 1000)
    assert few_channels_odds(10, 50, 10) == pytest.approx(1.0)
    assert few_channels_odds(2, 20, 10) < 1e-10


def test_two_channels_in_a_few_bursts_read_as_a_sweeping_phone() -> None:
    # 2 channels in 3 bursts is what 28 % of sweeping phones show on 10 channels: p is the
    # sweep's, not 3 / 10 (the moment estimate); 2 channels in 20 bursts is a 2-channel phone.
    plan = ChannelPlan(tuple(range(1, 11)), 0.25)
    catch = CatchModel(plan)
    two = channel_bit(1) | channel_bit(6)
    assert catch.p(two, 3) == catch.sweep_p
    assert catch.p(two, 20) == pytest.approx(channels_probed(2, 20, 10) / 10)
    assert catch.p(two, 20) < 0.5
    assert catch.p(channel_bit(1), 3) == pytest.approx(1 / 10)  # one channel: the bound
