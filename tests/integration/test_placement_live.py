"""A new sensor's caution in a live gateway: wall clock, ticker running, a real Mosquitto.

A fake fixed-channel radio hears, for the first 4.5 s, one device in the corridor at -61 dBm:
stronger than the weak rule's level (-64) but never placement.max_offset_db (9 dB) above it.
Nothing has taught this sensor its scale (one device, fewer readings than a window needs), so
the device counts for walk_in.min_time only and the stats say the sensor is cautious. Then five
phones come near (-50 dBm, many readings): the open window now looks like an occupied store at
the reference scale, the caution ends, and the corridor device counts again with them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.presence.placement import WINDOW_READINGS
from tests.integration.live import live_events, ticks, wifi_probe

CORRIDOR = "3c2eff4a1b07"
CROWD = [f"3c2eff4a20{i:02x}" for i in range(5)]
QUIET_S = 4.5


class Radio_:
    name = "radio"

    async def run(self, sink: Any) -> None:
        async for j, since in ticks(0.1):
            now = time.time()
            sink.offer(wifi_probe(now, CORRIDOR, 6, j, rssi=-61))
            if since >= QUIET_S:
                for mac in CROWD:
                    sink.offer(wifi_probe(now, mac, 6, j, rssi=-50))


def test_a_new_sensor_counts_a_weak_device_cautiously_until_a_crowd_teaches_it(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    events = live_events(
        tmp_path, local_broker, [Radio_()], 8.3,
        "queue: {wifi_repeat_interval: 0s}\n"
        "presence: {visit_timeout: 5s, sighting_window: 1s, stats_interval: 1s,\n"
        "  walk_in: {min_time: 2s, count_after: 0s}, footfall: {interval: 1s}}\n")
    stats = [e["data"].get("wifi_placement") for e in events
             if e["type"] == "presence.gateway.stats"]
    placement = [p["gw1"] for p in stats if p]
    assert placement, stats
    assert placement[0] == {"offset_db": 0.0, "source": "learning", "cautious": True}
    assert placement[-1]["cautious"] is False, placement
    present = [e["data"]["present"] for e in events if e["type"] == "presence.footfall"]
    # alone, the corridor device counts (within the cold start, weighted for the phones not
    # heard yet), then falls out after walk_in.min_time (2 s)
    quiet = present[:present.index(4.8)] if 4.8 in present else present
    assert quiet[0] > 0.0 and quiet[-1] == 0.0, present
    # with the crowd the caution has ended: the five phones and the corridor device count
    assert present[-1] == 4.8, present


class Emptying:
    """Five phones near the sensor, 200 readings in 4 s (exactly one placement window, so the
    next window holds none of them: its p90 is the corridor's alone), then only a device in
    the corridor at -67 dBm, 25 readings a second (its window closes after 8 s)."""

    name = "radio"

    async def run(self, sink: Any) -> None:
        async for j, _ in ticks(0.01):
            now = time.time()
            if j <= CROWD_TICKS:
                if j % 10 == 0:
                    for mac in CROWD:
                        sink.offer(wifi_probe(now, mac, 6, j, rssi=-50))
            elif j % 4 == 0:
                sink.offer(wifi_probe(now, CORRIDOR, 6, j, rssi=-67))


CROWD_TICKS = 400  # 40 rounds of the five phones: WINDOW_READINGS readings
assert CROWD_TICKS // 10 * len(CROWD) == WINDOW_READINGS


def test_once_the_store_looks_empty_a_weak_device_counts_for_walk_in_min_time(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    # The sensor's scale is known (the crowd's window was accepted). The corridor device's own
    # 200 readings then close a window whose p90 (-67) is far under an occupied store's, so
    # the store looks empty and the weak device (never near: -67 < -64), around for more than
    # walk_in.min_time (2 s) by then, drops out, where weak_max_presence would wait 30 min.
    events = live_events(
        tmp_path, local_broker, [Emptying()], 15.3,
        "queue: {wifi_repeat_interval: 0s}\n"
        "presence: {visit_timeout: 3s, sighting_window: 1s, stats_interval: 1s,\n"
        "  walk_in: {min_time: 2s, count_after: 0s}, footfall: {interval: 1s},\n"
        "  exit: {min_quiet: 1s}}\n")
    stats = [e["data"].get("wifi_placement") for e in events
             if e["type"] == "presence.gateway.stats"]
    assert [p["gw1"]["cautious"] for p in stats if p][-1] is False
    present = [e["data"]["present"] for e in events if e["type"] == "presence.footfall"]
    assert 4.0 in present, present  # the five phones
    after = present[present.index(4.0):]
    assert 0.8 in after, present  # the crowd gone: the corridor device alone, counted
    assert after[-1] == 0.0, present  # then out once a window reads empty, not after 30 min
