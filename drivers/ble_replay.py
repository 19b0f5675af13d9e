"""Replay of JSONL BLE recordings (docs/ble_recording.md) through the live decoders.

Invariants:
- Every line becomes sightings (via `gateway.core.ble.to_sightings`, with the recorded capture
  time as `ts`) or exactly one counted rejection; blank lines and `#` comments are skipped.
- Sightings are delivered with `sink.put_many` in file order, in batches, so a replay never
  loses an observation and the consumer sees capture time advance monotonically per file.
- `.gz` files are read through gzip. An unreadable file is `DriverError(name,
  "capture_unreadable")`; a bad line never stops the replay.
- File reads are synchronous but bounded (BATCH lines between awaits): a recording is local disk,
  and the await on `put_many` yields to the loop after every batch.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import BinaryIO

from presence_gateway.core.ble.decode import to_sightings
from presence_gateway.core.ble.record import parse_recording_line
from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.base import Sink
from presence_gateway.errors import DriverError

BATCH = 512


def _open(path: str) -> gzip.GzipFile | BinaryIO:
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")
    return open(path, "rb")


def iter_recording(path: str) -> Iterator[bytes]:
    """Non-empty, non-comment lines of a recording (bytes, newline stripped)."""
    with _open(path) as f:
        for raw in f:
            line = raw.strip()
            if line and not line.startswith(b"#"):
                yield line


class BleReplayDriver:
    """Reads recordings in order; returns at the end (a replay is not supervised forever)."""

    def __init__(self, name: str, paths: list[str], sensor: str = "") -> None:
        self.name = name
        self.paths = list(paths)
        self.sensor = sensor
        self.lines = 0
        self.rejected = 0

    async def run(self, sink: Sink) -> None:
        for path in self.paths:
            try:
                await self._replay(path, sink)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                detail = f"{path}: {getattr(exc, 'strerror', None) or exc}"
                raise DriverError(self.name, "capture_unreadable", detail) from None

    async def _replay(self, path: str, sink: Sink) -> None:
        batch: list[Sighting] = []
        for line in iter_recording(path):
            self.lines += 1
            rec = parse_recording_line(line)
            if isinstance(rec, Rejection):
                self.rejected += 1
                sink.reject(rec)
                continue
            ts, address, address_type, rssi, advert, channel = rec
            batch.extend(to_sightings(ts, address, address_type, rssi, advert,
                                      channel=channel, sensor=self.sensor))
            if len(batch) >= BATCH:
                await sink.put_many(batch)
                batch = []
        if batch:
            await sink.put_many(batch)
