"""Replay several recordings as one stream in capture-time order.

A store's Wi-Fi pcap and BLE recording of the same afternoon must interleave by timestamp, or
the core would see time jump back and forth between radios. Each replay driver runs into its
own small buffer; one merger pops the earliest head (a heap over the drivers) and forwards it
to the real sink. Memory stays bounded: each buffer holds at most `limit` sightings, and a
driver waits while its buffer is full.

Invariants: within one driver the order is kept; across drivers the output is sorted by `ts`
(ties keep driver order); rejections pass straight through; when a driver fails, the others
go on and the failure is raised after the merge, for the supervisor to report.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterable, Sequence

from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.base import Driver, Sink

_BATCH = 1024


class _Buffer:
    """A Sink for one driver: holds its sightings until the merger takes them."""

    def __init__(self, downstream: Sink, limit: int) -> None:
        self.items: deque[Sighting] = deque()
        self.downstream = downstream
        self.limit = limit
        self.done = False
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def offer(self, sighting: Sighting) -> None:
        self.items.append(sighting)
        self.changed.set()

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        for s in sightings:
            while len(self.items) >= self.limit:
                self.room.clear()
                self.changed.set()
                await self.room.wait()
            self.items.append(s)
        self.changed.set()

    def reject(self, rejection: Rejection) -> None:
        self.downstream.reject(rejection)

    async def head(self) -> Sighting | None:
        """The next sighting, waiting for the driver; None when it has finished."""
        while not self.items:
            if self.done:
                return None
            self.changed.clear()
            await self.changed.wait()
        return self.items[0]

    def pop(self) -> Sighting:
        s = self.items.popleft()
        if len(self.items) < self.limit // 2:
            self.room.set()
        return s


class MergedReplay:
    """A Driver that runs several replay drivers and delivers their output in time order."""

    def __init__(self, drivers: Sequence[Driver], limit: int = 4096) -> None:
        self.drivers = list(drivers)
        self.name = "+".join(d.name for d in drivers)
        self.limit = limit

    async def run(self, sink: Sink) -> None:
        buffers = [_Buffer(sink, self.limit) for _ in self.drivers]
        errors: list[BaseException] = []

        async def feed(driver: Driver, buf: _Buffer) -> None:
            try:
                await driver.run(buf)
            except Exception as exc:  # reported after the others finished
                errors.append(exc)
            finally:
                buf.done = True
                buf.changed.set()

        async with asyncio.TaskGroup() as tg:
            for d, b in zip(self.drivers, buffers, strict=True):
                tg.create_task(feed(d, b), name=f"replay:{d.name}")
            await self._merge(buffers, sink)
        if errors:
            raise errors[0]

    @staticmethod
    async def _merge(buffers: list[_Buffer], sink: Sink) -> None:
        heap: list[tuple[float, int]] = []
        for i, b in enumerate(buffers):
            first = await b.head()
            if first is not None:
                heap.append((first.ts, i))
        heapq.heapify(heap)
        batch: list[Sighting] = []
        while heap:
            _, i = heap[0]
            buf = buffers[i]
            batch.append(buf.pop())
            if len(batch) >= _BATCH:
                await sink.put_many(batch)
                batch = []
            if not buf.items and not buf.done and batch:
                await sink.put_many(batch)  # flush before waiting on a slow driver
                batch = []
            nxt = await buf.head()
            if nxt is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (nxt.ts, i))
        if batch:
            await sink.put_many(batch)
