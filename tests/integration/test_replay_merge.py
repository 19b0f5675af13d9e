"""Several recordings replay as one stream in capture-time order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from presence_gateway.core.model import AddressKind, Radio, Rejection, Sighting
from presence_gateway.drivers.fake import FakeDriver
from presence_gateway.runtime.replay_merge import MergedReplay

ROOT = Path(__file__).resolve().parents[2]


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


def test_replay_of_files_in_any_order_ends_every_visit(tmp_path: Path) -> None:
    """Newest capture first (2025 BLE, 2023 Wi-Fi, 2013 Wi-Fi): merged by time, every visit
    that starts also ends, and events come out in capture-time order."""
    demo = ROOT / "gateway" / "data" / "demo"
    files = [demo / "ble_boston_take2.pcap", demo / "wifi_brno_2023-04-17.pcap",
             demo / "wifi_tcpdump_exthdr.pcap"]
    out = tmp_path / "events.jsonl"
    res = subprocess.run([sys.executable, "-m", "presence_gateway", "replay", *map(str, files),
                          "--no-mqtt", "--events-out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    started = {e["data"]["visit_id"] for e in events if e["type"] == "presence.visit.started"}
    ended = {e["data"]["visit_id"] for e in events if e["type"] == "presence.visit.ended"}
    assert started and started == ended
    years = [e["time"][:4] for e in events if e["type"] == "presence.visit.started"]
    assert years == sorted(years) and {"2013", "2023", "2025"} <= set(years)
