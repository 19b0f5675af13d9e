"""One live gateway run for end-to-end tests: wall clock, the ticker running, a real broker.

`live_events` builds a store gateway (store s1, gateway gw1) on the given broker with a fast
presence configuration (`presence` is the YAML of that section, written by the test), runs the
`Service` in LIVE mode with the test's fake radios for `seconds` of wall clock, stops it as a
signal would, and returns the CloudEvents a subscriber received on the gateway's topics.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.config import parse_config
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.mqtt_helpers import Collector


def live_events(tmp_path: Path, broker: LocalBroker, radios: list[Any], seconds: float,
                extra: str) -> list[dict[str, Any]]:
    cfg = parse_config(
        f"store: {{id: s1}}\ngateway: {{id: gw1}}\nmqtt: {{url: '{broker.url}'}}\n"
        f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n" + extra,
        str(tmp_path / "gw.yaml"))
    svc = Service(cfg, RunOptions(mode=Mode.LIVE, flush_timeout_s=5), radios)
    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub:
        async def scenario() -> None:
            task = asyncio.create_task(svc.run())
            await asyncio.sleep(seconds)
            svc.stop_event.set()
            await task

        asyncio.run(scenario())
        time.sleep(0.5)  # the last deliveries reach the subscriber
        return sub.events()


async def ticks(step_s: float) -> AsyncIterator[tuple[int, float]]:
    """A fake radio's clock: steps of `step_s` of wall clock from now, as (the step's number
    from 1, seconds since the start), without drifting with the time each step takes."""
    start = time.time()
    for j in itertools.count(1):
        await asyncio.sleep(max(0.0, start + j * step_s - time.time()))
        yield j, time.time() - start


def wifi_probe(ts: float, mac: str, channel: int, seq: int, rssi: int = -50) -> Sighting:
    """A probe request from `mac` as the `wifi_monitor` driver reports it, tagged with the
    channel the radio is on."""
    return Sighting(ts=ts, radio=Radio.WIFI, address=bytes.fromhex(mac),
                    address_kind=AddressKind.PUBLIC, rssi=rssi, channel=channel,
                    kind=Kind.PROBE_REQUEST.value, seq=seq % 4096,
                    fields={"ds_channel": channel, "freq": 2407 + 5 * channel})
