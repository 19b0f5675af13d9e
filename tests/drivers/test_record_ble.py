"""The BLE recorder: line writer (pure, bleak's real types) and a run against a fake radio."""

from __future__ import annotations

import asyncio
import io
import json

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from presence_gateway.core.ble.decode import to_sightings
from presence_gateway.core.ble.record import parse_recording_line
from presence_gateway.core.model import Rejection
from presence_gateway.drivers.ble_bleak import DetectionCallback, Scanner
from presence_gateway.firmware_tools.record_ble import (
    AddressHasher,
    record,
    recording_line_from_bleak,
)

IBEACON = bytes.fromhex("02154142434445464748494041424344454600010002c5")
ADV = AdvertisementData(
    local_name="tag", manufacturer_data={76: IBEACON},
    service_data={"0000feaa-0000-1000-8000-00805f9b34fb": b"\x10\xf4\x01ab"},
    service_uuids=["0000feaa-0000-1000-8000-00805f9b34fb"], tx_power=None, rssi=-70,
    platform_data=("/org/bluez/hci0/dev_00_11_22_33_44_55", {"AddressType": "public"}),
)
DEV = BLEDevice("00:11:22:33:44:55", "tag", None)


def test_line_with_kept_address_round_trips() -> None:
    line = recording_line_from_bleak(DEV, ADV, 12.5, None)
    assert line is not None
    d = json.loads(line)
    assert d["address"] == "00:11:22:33:44:55" and d["address_type"] == "public"
    assert d["manufacturer_data"] == {"76": IBEACON.hex()} and d["rssi"] == -70
    rec = parse_recording_line(line)
    assert not isinstance(rec, Rejection)
    ts, address, address_type, rssi, advert, channel = rec
    assert (ts, address, address_type, rssi, channel) == (
        12.5, bytes.fromhex("001122334455"), "public", -70, None)
    kinds = [s.kind for s in to_sightings(ts, address, address_type, rssi, advert)]
    assert "ibeacon" in kinds


def test_hashed_addresses() -> None:
    h1, h2 = AddressHasher(b"k" * 32), AddressHasher(b"j" * 32)
    line = recording_line_from_bleak(DEV, ADV, 1.0, h1)
    assert line is not None and "00:11:22:33:44:55" not in line
    d = json.loads(line)
    pseudo = bytes.fromhex(d["address"].replace(":", ""))
    assert d["address_type"] == "random" and pseudo[0] & 0xC0 == 0xC0  # random static
    assert pseudo == h1.pseudo(bytes.fromhex("001122334455"))  # stable within a run
    assert pseudo != h2.pseudo(bytes.fromhex("001122334455"))  # unrelated across runs
    assert recording_line_from_bleak(BLEDevice("not-a-mac", None, None), ADV, 1.0, h1) is None
    assert "6b6b" not in repr(h1)


async def test_record_run_with_fake_radio() -> None:
    class FakeScanner:
        def __init__(self, cb: DetectionCallback) -> None:
            self.cb, self.stopped = cb, False

        async def start(self) -> None:
            self.cb(DEV, ADV)
            self.cb(DEV, ADV)

        async def stop(self) -> None:
            self.stopped = True

    made: list[FakeScanner] = []

    def factory(cb: DetectionCallback, mode: str, adapter: str) -> Scanner:
        assert (mode, adapter) == ("active", "hci3")
        made.append(FakeScanner(cb))
        return made[-1]

    out = io.StringIO()
    stop = asyncio.Event()
    stop.set()
    n = await record(out, adapter="hci3", scanner_factory=factory, clock=lambda: 7.0, stop=stop)
    lines = out.getvalue().splitlines()
    assert n == 2 and len(lines) == 2 and made[0].stopped
    assert lines[0] == lines[1] and "00:11:22:33:44:55" not in lines[0]
    assert json.loads(lines[0])["ts"] == 7.0
