"""A new sensor's caution in a live gateway: wall clock, ticker running, a real Mosquitto.

A fake fixed-channel radio hears, for the first 4.5 s, one device in the corridor at -61 dBm:
stronger than the weak rule's level (-64) but never placement.max_offset_db (9 dB) above it.
Nothing has taught this sensor its scale (one device, fewer readings than a window needs), so
the device counts for walk_in.min_time only and the stats say the sensor is cautious. Then five
phones come near (-50 dBm, many readings): the open window now looks like an occupied store at
the reference scale, the caution ends, and the corridor device counts again with them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from tests.integration.live import live_events

CORRIDOR = "3c2eff4a1b07"
CROWD = [f"3c2eff4a20{i:02x}" for i in range(5)]
QUIET_S = 4.5


class Radio_:
    name = "radio"

    async def run(self, sink: Any) -> None:
        start = time.time()
        j = 0
        while True:
            j += 1
            await asyncio.sleep(max(0.0, start + j * 0.1 - time.time()))
            now = time.time()
            sink.offer(self.probe(now, CORRIDOR, -61, j))
            if now - start >= QUIET_S:
                for mac in CROWD:
                    sink.offer(self.probe(now, mac, -50, j))

    @staticmethod
    def probe(ts: float, mac: str, rssi: int, j: int) -> Sighting:
        return Sighting(ts=ts, radio=Radio.WIFI, address=bytes.fromhex(mac),
                        address_kind=AddressKind.PUBLIC, rssi=rssi, channel=6,
                        kind=Kind.PROBE_REQUEST.value, seq=j % 4096,
                        fields={"ds_channel": 6, "freq": 2437})


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
