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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

import orjson

from presence_gateway.core.model import OutboundMessage


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
            if self.outbox is not None:
                await self.outbox.append(batch)
            self.committed += len(batch)

    def _tap(self, messages: Sequence[OutboundMessage]) -> None:
        out, cb = self.taps.events_out, self.taps.on_message
        if out is None and cb is None:
            return
        for m in messages:
            if out is not None:
                out.write(orjson.dumps({"topic": m.topic})[:-1] + b"," + m.payload[1:] + b"\n")
            if cb is not None:
                cb(m)
