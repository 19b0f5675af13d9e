"""Channel hopping in a live gateway: wall clock, ticker running, a real Mosquitto.

A fake radio hops over channels 1, 6 and 11, 0.4 s on each, and tags every frame with the
channel it is on, as the `wifi_monitor` driver does. Two phones probe every 0.5 s: one sweeps
every channel in its scan (heard on whichever channel the radio is on), one probes on
channel 6 only (heard only while the radio dwells there: at 0.5, 3.0, 4.0, 5.5, 6.5 and 9.0 s,
gaps of up to 2.5 s). The engine learns the plan from the frames' channels (a channel counts
after 3 frames: 1/6/11 by 5 s); read as a fixed radio the one-channel phone never has two
sightings within the 1 s sighting window and would open no visit; with the plan (p = 1/3 for
it) one reading is evidence enough and its windows are 3x longer, so it has exactly one visit
through its gaps and counts in `present`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.model import Sighting
from tests.integration.live import live_events, ticks, wifi_probe

PLAN = (1, 6, 11)
DWELL_S = 0.4
STEP_S = 0.5
assert STEP_S / DWELL_S == 5 / 4  # the slot arithmetic in Hopper.run
SWEEPER, ONE_CHANNEL = "3c2eff4a1b07", "3c2eff4a1b42"


class Hopper:
    """A hopping monitor radio hearing the two phones (frames tagged with its channel)."""

    name = "radio"

    async def run(self, sink: Any) -> None:
        async for j, _ in ticks(STEP_S):
            # the dwell slot of step j: j * STEP_S / DWELL_S = 5j / 4, in integers (a float
            # division at a slot boundary, 4.0 / 0.4, can land in the slot before)
            channel = PLAN[(5 * j // 4) % len(PLAN)]
            sink.offer(self.probe(time.time(), SWEEPER, channel, j))
            if channel == 6:
                sink.offer(self.probe(time.time(), ONE_CHANNEL, channel, j))

    @staticmethod
    def probe(ts: float, mac: str, channel: int, j: int) -> Sighting:
        return wifi_probe(ts, mac, channel, j)


def test_a_live_hopping_radio_keeps_a_one_channel_phone_in_one_visit(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    events = live_events(
        tmp_path, local_broker, [Hopper()], 9.3,
        "queue: {wifi_repeat_interval: 0s}\n"
        "presence: {visit_timeout: 2s, sighting_window: 1s, stats_interval: 1s,\n"
        "  walk_in: {min_time: 1s, count_after: 0s}, footfall: {interval: 1s},\n"
        "  exit: {min_quiet: 1s}}\n")
    started: dict[str, int] = {}
    for e in events:
        if e["type"] == "presence.visit.started":
            started[e["data"]["device"]] = started.get(e["data"]["device"], 0) + 1
    # both phones, one visit each: the one-channel phone's 2.5 s gap (beyond the 2 s visit
    # timeout) did not end its visit, and its lone readings opened one
    assert len(started) == 2, started
    assert set(started.values()) == {1}
    present = [e["data"]["present"] for e in events if e["type"] == "presence.footfall"]
    assert present[-1] == 1.6  # both counted (2 devices x people_per_device 0.8)


class FastHopper(Hopper):
    """A radio on 1, 6, 11 for FAST_DWELL_S each (no plan configured: the engine reads it from
    the frames, as it does a recording's), hearing a frame every 10-30 ms from a crowd."""

    async def run(self, sink: Any) -> None:
        start = time.time()
        for j in itertools.count(1):
            await asyncio.sleep(0.01 + 0.02 * ((j * 7919) % 100) / 100)  # 10-30 ms, uneven
            now = time.time()
            sink.offer(self.probe(now, f"3c2eff4a{j % 50:04x}",
                                  PLAN[int((now - start) / FAST_DWELL_S) % len(PLAN)], j))


FAST_DWELL_S = 0.1


def test_a_live_gateway_reads_an_unconfigured_radios_dwell_and_reports_it(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    events = live_events(
        tmp_path, local_broker, [FastHopper()], 5.2,
        "queue: {wifi_repeat_interval: 0s}\npresence: {stats_interval: 1s}\n")
    plans = [e["data"].get("wifi_plans") for e in events
             if e["type"] == "presence.gateway.stats"]
    assert plans and plans[-1] is not None, plans
    got = plans[-1]["gw1"]
    assert got["channels"] == list(PLAN) and got["learnt"] is True
    assert abs(got["dwell_s"] - FAST_DWELL_S) <= 0.3 * FAST_DWELL_S, got
    assert got["sweep_catch"] < 1.0  # a sweeping phone is no longer taken as always caught
