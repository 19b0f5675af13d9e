"""Replay of BLE air captures: pcap/pcapng (LE LL 251/256, nRF Sniffer 272) and btsnoop HCI logs.

Invariants:
- The format is detected by magic, never by file name: "btsnoop\\0" -> HCI reports
  (gateway.core.ble_air.iter_btsnoop_reports), pcapng section header -> scapy RawPcapNgReader,
  pcap magics -> RawPcapReader. Scapy only hands us raw bytes and timestamps; all parsing is
  the pure core (ble_air for the link layer / HCI, ble.parse_ad + to_sightings for the AD).
- Every record is exactly one of: sightings, a counted rejection (sink.reject, also tallied in
  `self.rejections` by reason), or skipped (non-advertising frames, tallied in `self.skipped`).
  Garbled SDR frames never raise.
- Capture timestamps become `Sighting.ts`; delivery is `sink.put_many` in file order, batched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from presence_gateway.core.ble.air import (
    BTSNOOP_MAGIC,
    AirAdvert,
    iter_btsnoop_reports,
    parse_ll_record,
)
from presence_gateway.core.ble.decode import parse_ad, to_sightings
from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.base import Sink
from presence_gateway.errors import DriverError

BATCH = 512
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def _pcap_records(path: str, ng: bool) -> Iterator[AirAdvert | Rejection | None]:
    reader: Any = RawPcapNgReader(path) if ng else RawPcapReader(path)
    try:
        for data, meta in reader:
            if ng:
                linktype = meta.linktype
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            else:
                linktype, ts = reader.linktype, meta.sec + meta.usec / 1e6
            yield parse_ll_record(data, linktype & 0xFFFF, ts)
    finally:
        reader.close()


def iter_capture(path: str) -> Iterator[AirAdvert | Rejection | None]:
    """Every record of a BLE capture file as an advertiser, a rejection or None (skipped)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == BTSNOOP_MAGIC:
        yield from iter_btsnoop_reports(Path(path).read_bytes())
    elif head[:4] == _PCAPNG_MAGIC:
        yield from _pcap_records(path, ng=True)
    elif head[:4] in _PCAP_MAGICS:
        yield from _pcap_records(path, ng=False)
    else:
        raise ValueError("not a pcap, pcapng or btsnoop file")


def sightings_from_air(adv: AirAdvert, sensor: str = "") -> list[Sighting] | Rejection:
    """One air advertiser -> sightings through the shared AD decoders."""
    advert = parse_ad(adv.data)
    if isinstance(advert, Rejection):
        return advert
    return to_sightings(adv.ts, adv.address, adv.address_type, adv.rssi, advert,
                        channel=adv.channel, sensor=sensor)


class BlePcapDriver:
    """Replays captures in order and returns at the end."""

    def __init__(self, name: str, paths: list[str], sensor: str = "") -> None:
        self.name = name
        self.paths = list(paths)
        self.sensor = sensor
        self.rejections: Counter[str] = Counter()
        self.skipped = 0
        self.adverts = 0

    async def run(self, sink: Sink) -> None:
        for path in self.paths:
            try:
                await self._replay(path, sink)
            except (OSError, ValueError, EOFError, Scapy_Exception) as exc:
                raise DriverError(self.name, "capture_unreadable", f"{path}: {exc}") from None

    def _reject(self, sink: Sink, rejection: Rejection) -> None:
        self.rejections[rejection.reason] += 1
        sink.reject(rejection)

    async def _replay(self, path: str, sink: Sink) -> None:
        batch: list[Sighting] = []
        for rec in iter_capture(path):
            if rec is None:
                self.skipped += 1
                continue
            out = rec if isinstance(rec, Rejection) else sightings_from_air(rec, self.sensor)
            if isinstance(out, Rejection):
                self._reject(sink, out)
                continue
            self.adverts += 1
            batch.extend(out)
            if len(batch) >= BATCH:
                await sink.put_many(batch)
                batch = []
        if batch:
            await sink.put_many(batch)

