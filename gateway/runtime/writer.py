"""The outbox writer: the one task that commits messages to the outbox, in batches.

Invariants:
- One owner: only `run` awaits the outbox. Producers (the consumer, the ticker, the control
  plane) call `add`, which never awaits; so a message added while a commit is in flight waits
  for the next batch instead of being lost, and no message is committed twice.
- Batches: a commit starts when `batch_max` messages wait or `interval` passed since the
  first one arrived; `close()` commits what is left and ends `run`.
- Bounded: above `limit` waiting messages `room()` blocks producers that can wait (the consumer
  of a replay, a mass visit end); live sources never wait here (the channel drops for them).
- Taps (`--events-out`, the demo's subscriber) see every message once, when it is added, in
  the order the pipeline produced them.
- Without an outbox (a run that does not publish) messages go to the taps only.
- A full disk never ends the run: a batch the outbox refuses with DiskFull goes back to the
  front of the waiting list and is retried with backoff; meanwhile the list stays bounded by
  `limit` by dropping the oldest anonymous messages first (then the oldest), counted in
  `dropped`, and producers are not held (capture goes on). Logged once per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

import orjson

from presence_gateway.core.model import OutboundMessage
from presence_gateway.errors import DiskFull

log = logging.getLogger("presence_gateway")
RETRY_S = (0.5, 10.0)  # backoff between commits while the disk is full


class Sink(Protocol):
    async def append(self, messages: Sequence[OutboundMessage]) -> None: ...


@dataclass(frozen=True, slots=True)
class Taps:
    """Where messages go besides the outbox."""

    events_out: IO[bytes] | None = None
    on_message: Callable[[OutboundMessage], None] | None = None


class OutboxWriter:
    def __init__(self, outbox: Sink | None, *, batch_max: int, interval: float,
                 taps: Taps = Taps(), limit: int | None = None) -> None:
        self.outbox = outbox
        self.batch_max = batch_max
        self.interval = interval
        self.limit = limit if limit is not None else max(4 * batch_max, 10_000)
        self.taps = taps
        self._pending: list[OutboundMessage] = []
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.committed = 0
        self.dropped = 0          # messages dropped from memory while the disk was full
        self.disk_full = False
        self._retry = RETRY_S[0]

    # -- producers --------------------------------------------------------------------------
    def add(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        self._tap(messages)
        first = not self._pending
        if first:
            self._first_at = time.monotonic()
        self._pending.extend(messages)
        self._idle.clear()
        if first or len(self._pending) >= self.batch_max:
            self._wake.set()  # the first starts the batch timer, a full batch commits now
        if len(self._pending) >= self.limit:
            if self.disk_full:
                self._bound()  # nothing is committed meanwhile: holding producers stops capture
            else:
                self._room.clear()

    async def room(self) -> None:
        """Wait while more than `limit` messages wait for a commit (back-pressure)."""
        await self._room.wait()

    async def drained(self) -> None:
        """Wait until everything added so far is committed."""
        self._wake.set()
        await self._idle.wait()

    def close(self) -> None:
        """No more messages: `run` commits what is left, then returns."""
        self._closed = True
        self._wake.set()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    # -- the owning task -------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._first_at + self.interval - time.monotonic()
            if due > 0 and len(self._pending) < self.batch_max and not self._closed:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
                continue
            # Swap before the await: what arrives during the commit is the next batch.
            batch, self._pending = self._pending, []
            self._room.set()
            if self.outbox is not None and not await self._commit(batch):
                continue
            self.committed += len(batch)

    async def _commit(self, batch: list[OutboundMessage]) -> bool:
        """Append `batch`; on DiskFull put it back (bounded) and wait before the next try."""
        assert self.outbox is not None
        try:
            await self.outbox.append(batch)
        except DiskFull as exc:
            if not self.disk_full:
                log.warning("%s; holding up to %d events in memory, the oldest anonymous are"
                            " dropped beyond that; capture goes on", exc, self.limit)
                self._retry = RETRY_S[0]
            self.disk_full = True
            self._pending = batch + self._pending
            self._bound()
            self._room.set()
            if self._closed:  # stopping: what cannot be stored now is lost, and counted
                self.dropped += len(self._pending)
                log.warning("disk still full at stop: %d events not stored", len(self._pending))
                self._pending = []
                return False
            await asyncio.sleep(self._retry)
            self._retry = min(self._retry * 2, RETRY_S[1])
            return False
        if self.disk_full:
            self.disk_full = False
            log.warning("disk writable again: events are stored (%d dropped meanwhile)",
                        self.dropped)
        return True

    def _bound(self) -> None:
        """Keep at most `limit` waiting: drop the oldest anonymous first, then the oldest."""
        over = len(self._pending) - self.limit
        if over <= 0:
            return
        kept: list[OutboundMessage] = []
        for i, m in enumerate(self._pending):
            if over and m.anonymous:
                over -= 1
                continue
            kept.append(m)
            if not over:
                kept.extend(self._pending[i + 1:])
                break
        if over:
            kept = kept[over:]
        self.dropped += len(self._pending) - len(kept)
        self._pending = kept

    def _tap(self, messages: Sequence[OutboundMessage]) -> None:
        out, cb = self.taps.events_out, self.taps.on_message
        if out is None and cb is None:
            return
        for m in messages:
            if out is not None:
                out.write(orjson.dumps({"topic": m.topic})[:-1] + b"," + m.payload[1:] + b"\n")
            if cb is not None:
                cb(m)
