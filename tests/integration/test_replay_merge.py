"""Several recordings replay as one stream in capture-time order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from drivers.fake import FakeDriver
from gateway.core.model import AddressKind, Radio, Rejection, Sighting
from gateway.replay_merge import MergedReplay


def s(ts: float, radio: Radio = Radio.WIFI) -> Sighting:
    return Sighting(ts=ts, radio=radio, address=bytes(6), address_kind=AddressKind.PUBLIC,
                    rssi=-50, channel=1, kind="probe_request")


class Collect:
    def __init__(self) -> None:
        self.items: list[Sighting] = []
        self.rejects: list[Rejection] = []

    def offer(self, x: Sighting) -> None:
        self.items.append(x)

    async def put_many(self, xs: Iterable[Sighting]) -> None:
        self.items.extend(xs)
        await asyncio.sleep(0)

    def reject(self, r: Rejection) -> None:
        self.rejects.append(r)


class Broken:
    name = "broken"

    async def run(self, sink: Collect) -> None:
        await sink.put_many([s(1.5)])
        raise RuntimeError("capture ended early")


def test_interleaves_by_time_with_small_buffers() -> None:
    wifi = FakeDriver("wifi", [s(t) for t in range(0, 10000, 3)])
    ble = FakeDriver("ble", [s(t + 0.5, Radio.BLE) for t in range(0, 10000, 7)] +
                     [Rejection(Radio.BLE, "ad_overrun")])
    out = Collect()
    asyncio.run(MergedReplay([wifi, ble], limit=64).run(out))
    ts = [x.ts for x in out.items]
    assert ts == sorted(ts) and len(ts) == len(wifi.items) + len(ble.items) - 1
    assert [r.reason for r in out.rejects] == ["ad_overrun"]


def test_a_failing_driver_does_not_stop_the_others() -> None:
    out = Collect()
    with pytest.raises(RuntimeError, match="ended early"):
        asyncio.run(MergedReplay([FakeDriver("ok", [s(1.0), s(2.0)]), Broken()]).run(out))
    assert [x.ts for x in out.items] == [1.0, 1.5, 2.0]
