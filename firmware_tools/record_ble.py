"""`presence-gateway record ble`: save live adverts in the JSONL recording format.

`presence-gateway record ble --out FILE.jsonl [--adapter hci0] [--seconds 600] [--keep-addresses]`
(the command line is cli/record.py; this module is the recorder).

Invariants:
- Unless --keep-addresses is given, no real address reaches the file: each one is replaced by
  HMAC-SHA256(run key, address) truncated to 6 bytes with the two top bits set (a random static
  address), type "random". The run key is random and lives only in memory, so a device keeps one
  pseudo-address within a recording and recordings cannot be linked to each other or reversed.
- One line per bleak detection callback, written by the pure `recording_line_from_bleak`
  (docs/ble_recording.md); replaying the file gives the same decoded sightings (addresses aside).
- File writes happen in the callback: a buffered local append of < 1 KB; the recorder is a
  one-off lab tool, not the gateway's hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import TextIO

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from presence_gateway.core.ble.record import format_recording_line
from presence_gateway.core.ble.types import Advert
from presence_gateway.core.privacy import parse_mac
from presence_gateway.drivers.ble_bleak import (
    ScannerFactory,
    bleak_address_type,
    bleak_scanner_factory,
)


class AddressHasher:
    """Keyed, per-run pseudo-addresses: same input -> same output, unrelated across keys."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    def __repr__(self) -> str:
        return "AddressHasher(<key hidden>)"

    def pseudo(self, address: bytes) -> bytes:
        d = hmac.new(self._key, b"presence-gateway/record/" + address, hashlib.sha256).digest()
        return bytes((d[0] | 0xC0,)) + d[1:6]


def recording_line_from_bleak(device: BLEDevice, adv: AdvertisementData, ts: float,
                              hasher: AddressHasher | None) -> str | None:
    """One bleak callback -> one JSONL line (None when the address is not a MAC)."""
    address = parse_mac(device.address)
    if address is None:
        return None
    address_type = bleak_address_type(device, adv)
    if hasher is not None:
        address, address_type = hasher.pseudo(address), "random"
    advert = Advert(local_name=adv.local_name, manufacturer_data=adv.manufacturer_data,
                    service_data=adv.service_data, service_uuids=tuple(adv.service_uuids),
                    tx_power=adv.tx_power)
    rssi = adv.rssi if adv.rssi is not None and -127 < adv.rssi < 127 else None
    return format_recording_line(ts, address, address_type, rssi, advert)


async def record(out: TextIO, *, adapter: str = "hci0", seconds: float | None = None,
                 keep_addresses: bool = False,
                 scanner_factory: ScannerFactory = bleak_scanner_factory,
                 clock: Callable[[], float] = time.time,
                 stop: asyncio.Event | None = None) -> int:
    """Scan actively and write lines until `seconds` pass or `stop` is set; returns lines."""
    hasher = None if keep_addresses else AddressHasher()
    written = 0

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        nonlocal written
        line = recording_line_from_bleak(device, adv, clock(), hasher)
        if line is not None:
            out.write(line + "\n")
            written += 1

    scanner = scanner_factory(on_advert, "active", adapter)
    await scanner.start()
    try:
        done = stop or asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=seconds)
    finally:
        await scanner.stop()
    return written
