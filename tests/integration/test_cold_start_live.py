"""The cold start in a live gateway: wall clock, ticker running, a real Mosquitto.

A gateway (re)starts in an open store. A phone inside probes every 3 s (a compressed day:
`walk_in.min_time` 3 s is the cold-start window, `sighting_window` 1 s, the visit timeout
5 s). In the first seconds it has been heard once: it already counts in `present` (one strong
reading is evidence enough in the cold start) but no visit is made of one frame; its second
reading, 3 s later (past the 1 s sighting window), starts its one visit instead of starting
over. Before the rule it was counted only at its second reading within `sighting_window`, which
a phone this slow never has: no visit, and 0 people all along.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from tests.integration.live import live_events

PHONE = "3c2eff4a1c11"
GAP_S = 3.0


class SlowPhoneRadio:
    """A fixed-channel monitor radio hearing one phone that probes every GAP_S seconds."""

    name = "radio"

    def __init__(self) -> None:
        self.heard: list[float] = []

    async def run(self, sink: Any) -> None:
        start = time.time()
        j = 0
        while True:
            await asyncio.sleep(max(0.0, start + 0.3 + j * GAP_S - time.time()))
            now = time.time()
            self.heard.append(now)
            sink.offer(Sighting(ts=now, radio=Radio.WIFI, address=bytes.fromhex(PHONE),
                                address_kind=AddressKind.PUBLIC, rssi=-50, channel=6,
                                kind=Kind.PROBE_REQUEST.value, seq=j,
                                fields={"ds_channel": 6, "freq": 2437}))
            j += 1


def test_a_live_cold_start_counts_a_slow_phone_at_once_and_visits_it_once(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    radio = SlowPhoneRadio()
    events = live_events(
        tmp_path, local_broker, [radio], 7.6,
        "presence: {visit_timeout: 5s, sighting_window: 1s, stats_interval: 1s,\n"
        "  walk_in: {min_time: 3s, count_after: 0s}, footfall: {interval: 1s},\n"
        "  exit: {min_quiet: 5s}}\n")
    second = radio.heard[1]
    footfall = [e for e in events if e["type"] == "presence.footfall"]
    before_visit = [e["data"] for e in footfall
                    if e["data"]["devices"]["wifi"] and _ts(e) < second]
    # counted on its first reading, before its visit exists (weighted >= 1 device)
    assert before_visit, [(_ts(e), e["data"]["devices"]) for e in footfall]
    assert all(d["present"] >= 0.8 for d in before_visit)
    started = [e for e in events if e["type"] == "presence.visit.started"]
    assert len(started) == 1  # one visit, opened by the second reading (3 s later)
    assert abs(_ts(started[0]) - second) < 0.5
    # and it stays counted through its 3 s gaps to the end of the run
    assert all(e["data"]["devices"]["wifi"] == 1 for e in footfall if _ts(e) > radio.heard[0] + 1)


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
