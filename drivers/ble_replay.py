"""Replay of JSONL BLE recordings (docs/ble_recording.md) through the live decoders.

Invariants:
- Every line becomes sightings (via `gateway.core.ble.to_sightings`, with the recorded capture
  time as `ts`) or exactly one counted rejection (`sink.reject`, also tallied by reason in
  `self.rejections`); blank lines and `#` comments are skipped. A bad line never stops the
  replay, whatever it holds (bad JSON, wrong types, missing fields, huge numbers, binary).
- A line longer than MAX_LINE is read past in pieces and rejected as `record_too_long`: a
  damaged file without newlines cannot make the reader hold gigabytes.
- Sightings are delivered with `sink.put_many` in file order, in batches, so a replay never
  loses an observation and the consumer sees capture time advance monotonically per file.
- `.gz` files are read through gzip. A file that cannot be opened is `DriverError(name,
  "capture_unreadable")`; a file damaged part-way (corrupt or truncated gzip stream, read error)
  raises the same after everything before the damage has been delivered, and the detail names
  the file, the line and the byte offset (of the decompressed data for `.gz`) where it broke.
- File reads are synchronous but bounded (BATCH lines between awaits): a recording is local disk,
  and the await on `put_many` yields to the loop after every batch.
"""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from presence_gateway.core.ble.decode import to_sightings
from presence_gateway.core.ble.record import parse_recording_line
from presence_gateway.core.model import Radio, Rejection, Sighting
from presence_gateway.drivers.base import Sink
from presence_gateway.errors import DriverError

BATCH = 512
# A recorded advert is well under 8 KiB of JSON (a 1,650-byte extended advert is 3,300 hex
# digits); a line 8 times that is damage or hostile, not a recording.
MAX_LINE = 1 << 16
TOO_LONG = Rejection(Radio.BLE, "record_too_long")
# What reading a damaged file raises: OSError (read errors, gzip.BadGzipFile), EOFError (gzip
# stream cut short), zlib.error (corrupt deflate data).
_DAMAGE = (OSError, EOFError, zlib.error)


def _open(path: str) -> gzip.GzipFile | BinaryIO:
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")
    return open(path, "rb")


class RecordingReader:
    """The lines of one recording, with the position reached (for the damage report)."""

    def __init__(self, f: gzip.GzipFile | BinaryIO) -> None:
        self._f = f
        self.offset = 0  # bytes consumed (decompressed for .gz): where a failing read began
        self.line_no = 0

    def __iter__(self) -> Iterator[bytes | Rejection]:
        """Non-empty, non-comment lines (newline stripped); TOO_LONG for an overlong line."""
        read = self._f.readline
        while raw := read(MAX_LINE + 1):
            self.offset += len(raw)
            self.line_no += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                self._skip_rest()
                yield TOO_LONG
                continue
            line = raw.strip()
            if line and not line.startswith(b"#"):
                yield line

    def _skip_rest(self) -> None:
        """Read to the end of the current line in MAX_LINE pieces (memory stays bounded)."""
        while piece := self._f.readline(MAX_LINE):
            self.offset += len(piece)
            if piece.endswith(b"\n"):
                return


def line_sightings(line: bytes, sensor: str = "") -> list[Sighting] | Rejection:
    """One recording line -> its sightings, or the rejection to count; never raises."""
    rec = parse_recording_line(line)
    if isinstance(rec, Rejection):
        return rec
    ts, address, address_type, rssi, advert, channel = rec
    return to_sightings(ts, address, address_type, rssi, advert, channel=channel, sensor=sensor)


class BleReplayDriver:
    """Reads recordings in order; returns at the end (a replay is not supervised forever)."""

    def __init__(self, name: str, paths: list[str], sensor: str = "") -> None:
        self.name = name
        self.paths = list(paths)
        self.sensor = sensor
        self.lines = 0
        self.rejected = 0
        self.rejections: Counter[str] = Counter()

    async def run(self, sink: Sink) -> None:
        for path in self.paths:
            try:
                f = _open(path)
            except OSError as exc:
                detail = f"{path}: {exc.strerror or exc}"
                raise DriverError(self.name, "capture_unreadable", detail) from None
            with f:
                await self._replay(path, RecordingReader(f), sink)

    def _reject(self, sink: Sink, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejections[rejection.reason] += 1
        sink.reject(rejection)

    async def _replay(self, path: str, reader: RecordingReader, sink: Sink) -> None:
        batch: list[Sighting] = []
        try:
            for line in reader:
                self.lines += 1
                out = line if isinstance(line, Rejection) else line_sightings(line, self.sensor)
                if isinstance(out, Rejection):
                    self._reject(sink, out)
                    continue
                batch.extend(out)
                if len(batch) >= BATCH:
                    await sink.put_many(batch)
                    batch = []
        except _DAMAGE as exc:
            if batch:  # what precedes the damage is a valid recording: deliver it
                await sink.put_many(batch)
            raise DriverError(self.name, "capture_unreadable", _damage(path, reader, exc)
                              ) from None
        if batch:
            await sink.put_many(batch)


def _damage(path: str, reader: RecordingReader, exc: BaseException) -> str:
    """The installer's detail: which file, where it broke, and the reader's own words."""
    cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if not reader.offset:  # nothing readable at all (e.g. "Not a gzipped file")
        return f"{path}: {cause}"
    where = "decompressed byte" if path.endswith(".gz") else "byte"
    return f"{path}: damaged at {where} {reader.offset} (after line {reader.line_no}): {cause}"
