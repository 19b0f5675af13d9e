"""Replay of BLE air captures: pcap/pcapng (LE LL 251/256, nRF Sniffer 272) and btsnoop HCI logs.

Invariants:
- The format is detected by magic, never by file name: "btsnoop\\0" -> HCI reports
  (gateway.core.ble.air.btsnoop_packets + hci_event_reports), pcap / pcapng magics -> the
  native record reader shared with the Wi-Fi replay (drivers/pcap_records.py). All parsing
  of link layer, HCI and AD is the pure core (ble.air, ble.parse_ad + to_sightings).
- Every record is exactly one of: sightings, a counted rejection (sink.reject, also tallied in
  `self.rejections` by reason), or skipped (non-advertising frames, tallied in `self.skipped`).
  Garbled SDR frames never raise.
- Capture timestamps become `Sighting.ts`; delivery is `sink.put_many` in file order, batched.
- A file that cannot be opened or is not a supported capture raises DriverError(name,
  "capture_unreadable"); a file cut short or damaged part-way raises it after everything before
  the damage has been delivered, with the byte offset where the damage starts (the same words as
  the Wi-Fi replay: "truncated or corrupt pcap record at byte N").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from presence_gateway.core.ble.air import (
    BTSNOOP_HEADER_LEN,
    BTSNOOP_MAGIC,
    AirAdvert,
    btsnoop_header_error,
    btsnoop_packets,
    hci_event_reports,
    parse_ll_record,
)
from presence_gateway.core.ble.decode import parse_ad, to_sightings
from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.base import Sink
from presence_gateway.drivers.pcap_records import PcapError, iter_records
from presence_gateway.errors import DriverError

BATCH = 512
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def _pcap_records(path: str) -> Iterator[AirAdvert | Rejection | None]:
    for ts, linktype, data in iter_records(path):
        yield parse_ll_record(data, linktype & 0xFFFF, ts)  # upper bits: FCS length


def _btsnoop_records(path: str) -> Iterator[AirAdvert | Rejection]:
    data = Path(path).read_bytes()
    bad = btsnoop_header_error(data)
    if bad is not None:  # e.g. BlueZ btmon's datalink 2001: nothing here could be read
        raise PcapError(f"unsupported btsnoop file ({bad.reason}; H4 datalink 1002 only)")
    reached = BTSNOOP_HEADER_LEN  # end of the last complete record
    for end, ts, packet in btsnoop_packets(data):
        reached = end
        if packet[:1] == b"\x04":  # HCI event; commands and ACL data carry no adverts
            yield from hci_event_reports(packet[1:], ts)
    if reached != len(data):
        raise PcapError("truncated or corrupt btsnoop record", reached)


def iter_capture(path: str) -> Iterator[AirAdvert | Rejection | None]:
    """Every record of a BLE capture file as an advertiser, a rejection or None (skipped);
    PcapError (with the byte offset) where the file is damaged, after the records before it."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == BTSNOOP_MAGIC:
        yield from _btsnoop_records(path)
    elif head[:4] == _PCAPNG_MAGIC or head[:4] in _PCAP_MAGICS:
        yield from _pcap_records(path)
    else:
        raise PcapError("not a pcap, pcapng or btsnoop file")


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
            await self._replay(path, sink)

    def _reject(self, sink: Sink, rejection: Rejection) -> None:
        self.rejections[rejection.reason] += 1
        sink.reject(rejection)

    async def _replay(self, path: str, sink: Sink) -> None:
        batch: list[Sighting] = []
        try:
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
        except (OSError, PcapError) as exc:
            if batch:  # a damaged file still delivers what precedes the damage
                await sink.put_many(batch)
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DriverError(self.name, "capture_unreadable", f"{path}: {detail}") from None
        if batch:
            await sink.put_many(batch)

