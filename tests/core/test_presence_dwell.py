"""A recording's hopping radio: its dwell read from when consecutive frames change channel.

Scripted radios with a known schedule (a fixed cycle over the plan's channels, frames from
several phones at random times, each tagged with the channel the radio is on when it
arrives); the estimator (core/presence/dwell.py) must find the dwell without being told, and
the engine must then cap a sweeping phone's catch at what that timing catches
(hopping.py `sweep_catch`). The measured effect on the Brno variants is in docs/presence.md.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from presence_gateway.core.presence.dwell import SETTLE_SWITCHES, DwellInference
from presence_gateway.core.presence.hopping import ChannelPlan, _SensorPlan, sweep_catch
from presence_gateway.core.state import attributes
from tests.core.presence_helpers import run, wifi
from tests.core.test_presence_hopping import engine


def hopper_frames(channels: tuple[int, ...], dwell_s: float, rate: float, seconds: float,
                  seed: int = 1) -> list[tuple[float, int]]:
    """(time, channel tag) of the frames a radio with a fixed cycle hears: arrivals a Poisson
    stream of `rate` per second, the cycle's phase drawn too."""
    draw = random.Random(seed)
    phase = draw.random() * dwell_s * len(channels)
    t, out = 1000.0, []
    while t < 1000.0 + seconds:
        t += draw.expovariate(rate)
        out.append((t, channels[int((t + phase) // dwell_s) % len(channels)]))
    return out


@pytest.mark.parametrize(("channels", "dwell_s"), [
    (tuple(range(1, 11)), 0.05),  # the Brno ESP32 sniffer's scan
    (tuple(range(1, 11)), 0.25),
    ((1, 6, 11), 0.25),
    ((1, 6, 11), 1.0),
])
def test_the_dwell_is_read_from_when_frames_change_channel(
        channels: tuple[int, ...], dwell_s: float) -> None:
    inf = DwellInference()
    last = None
    for ts, ch in hopper_frames(channels, dwell_s, rate=4.0 / dwell_s, seconds=600 * dwell_s):
        got = inf.observe(ts, ch)
        last = got if got is not None else last
    assert last is not None and inf.settled
    assert last == pytest.approx(dwell_s, rel=0.2)


def test_a_fixed_radio_and_a_few_frames_give_no_dwell() -> None:
    fixed = DwellInference()
    assert all(fixed.observe(ts, 6) is None for ts, _ in hopper_frames((6,), 0.1, 40.0, 60.0))
    assert fixed.estimate() is None  # no frame ever changed channel
    few = DwellInference()
    frames = hopper_frames((1, 6, 11), 0.25, 16.0, 1.0)  # a second: too few switches to say
    assert all(few.observe(ts, ch) is None for ts, ch in frames)
    assert few.estimate() is None and not few.settled


def test_a_silence_or_frames_out_of_order_teach_nothing() -> None:
    inf = DwellInference()
    inf.observe(100.0, 1)
    inf.observe(99.0, 6)  # out of order
    inf.observe(200.0, 11)  # 100 s of silence: no dwell is that long
    assert inf._pairs == 0


def test_a_recording_learns_its_radios_dwell_and_the_sweeps_it_catches() -> None:
    plan = tuple(range(1, 11))
    eng = engine(None)
    trace = [dataclasses.replace(wifi(ts, f"phone-{i % 7}"), channel=ch)
             for i, (ts, ch) in enumerate(hopper_frames(plan, 0.1, 40.0, 120.0))]
    run(eng, trace, until=trace[-1].ts + 1.0)
    got = eng.wifi_plans["gw-1"]
    assert got["channels"] == list(plan) and got["learnt"] is True
    dwell = got["dwell_s"]
    assert isinstance(dwell, float) and dwell == pytest.approx(0.1, rel=0.2)
    # a sweeping phone's catch is capped by that timing (1 while the dwell was unknown)
    assert got["sweep_catch"] == round(sweep_catch(ChannelPlan(plan, dwell)), 2) < 0.9
    assert eng._plans._learnt["gw-1"].hops is None  # settled: nothing more is spent on it


def test_a_live_radios_plan_is_reported_as_given_and_nothing_is_learnt() -> None:
    eng = engine(ChannelPlan((1, 6, 11), 0.25))
    trace = [dataclasses.replace(wifi(ts, "p"), channel=ch)
             for ts, ch in hopper_frames((1, 6, 11), 1.0, 20.0, 60.0)]
    run(eng, trace, until=trace[-1].ts + 1.0)
    assert eng.wifi_plans == {"*": {"channels": [1, 6, 11], "dwell_s": 0.25, "learnt": False,
                                    "sweep_catch": round(sweep_catch(ChannelPlan((1, 6, 11),
                                                                                 0.25)), 2)}}
    assert engine(None).wifi_plans == {}  # nothing heard: no hopping sensor to report


def test_a_snapshot_from_before_dwell_learning_restores_without_it() -> None:
    sp = _SensorPlan(ChannelPlan((1, 6, 11)), learn=True)
    state = attributes(sp)
    del state["hops"]
    old = _SensorPlan.__new__(_SensorPlan)
    old.__setstate__(state)
    assert old.hops is None and old.plan.channels == (1, 6, 11)


def test_settling_needs_the_switches() -> None:
    inf = DwellInference()
    frames = hopper_frames((1, 6, 11), 0.25, 16.0, 3000.0)
    switches = 0
    prev = frames[0][1]
    for ts, ch in frames:
        inf.observe(ts, ch)
        switches += ch != prev
        prev = ch
        if inf.settled:
            break
    assert inf.settled and switches >= SETTLE_SWITCHES
