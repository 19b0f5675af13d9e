"""Replay of Wi-Fi captures (pcap / pcapng; RadioTap, Prism, AVS or plain 802.11 link types).

Invariants:
- Records come from the small native reader (drivers/pcap_records.py, ~0.5 µs per record);
  `reader="scapy"` selects scapy's RawPcapReader / RawPcapNgReader instead (same records,
  ~7x slower per record). Every frame goes through the pure `gateway.core.wifi.parse_record`.
- Every record is exactly one of: a Sighting (delivered with `sink.put_many` in file order,
  batches of BATCH, capture timestamps as `ts`), a Rejection (`sink.reject`, also tallied in
  `self.rejections`), or ignored (beacons, ACKs, AP traffic; tallied in `self.ignored`).
- A file that cannot be opened or is not a capture raises DriverError(name, "capture_unreadable");
  a file damaged part-way raises it after everything before the damage has been delivered.
- The event loop is given back after every batch, so a million-frame replay never starves the
  other tasks of the service.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.base import Sink
from presence_gateway.drivers.pcap_records import PcapError, Record, iter_records, read_scapy
from presence_gateway.errors import DriverError

BATCH = 512


def iter_pcap(path: str | Path, reader: str = "native") -> Iterator[Record]:
    """(ts, linktype, bytes) for every record of a capture; DriverError when unreadable."""
    source = read_scapy if reader == "scapy" else iter_records
    try:
        yield from source(path)
    except (OSError, PcapError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DriverError("wifi_pcap", "capture_unreadable", f"{path}: {detail}") from None
    except Exception as exc:  # scapy's readers raise their own exception types
        raise DriverError("wifi_pcap", "capture_unreadable", f"{path}: {exc}") from None


class WifiPcapDriver:
    """Replays capture files in order, then returns (a replay driver ends with its recording)."""

    def __init__(self, name: str, paths: list[str], sensor: str = "",
                 reader: str = "native", batch: int = BATCH) -> None:
        self.name = name
        self.batch = batch
        self.paths = list(paths)
        self.sensor = sensor
        self.reader = reader
        self.delivered = 0
        self.ignored = 0
        self.rejections: Counter[str] = Counter()

    async def run(self, sink: Sink) -> None:
        for path in self.paths:
            try:
                await self._replay(path, sink)
            except DriverError as exc:
                raise DriverError(self.name, exc.reason, exc.detail) from None

    async def _replay(self, path: str, sink: Sink) -> None:
        batch: list[Sighting] = []
        sensor, size = self.sensor, self.batch
        try:
            for ts, linktype, data in iter_pcap(path, self.reader):
                result = parse_record(data, linktype, ts, sensor)
                if result is None:
                    self.ignored += 1
                elif isinstance(result, Rejection):
                    self.rejections[result.reason] += 1
                    sink.reject(result)
                else:
                    batch.append(result)
                    if len(batch) >= size:
                        await self._deliver(batch, sink)
                        batch = []
        except DriverError:  # a damaged file still delivers what precedes the damage
            if batch:
                await self._deliver(batch, sink)
            raise
        if batch:
            await self._deliver(batch, sink)

    async def _deliver(self, batch: list[Sighting], sink: Sink) -> None:
        await sink.put_many(batch)
        self.delivered += len(batch)
        await asyncio.sleep(0)  # put_many may not suspend when the queue has room
