"""The bounded queue between drivers and the core, with the privacy boundary at its mouth.

Invariants:
- Raw addresses stop here: `offer`/`put_many` admit each Sighting through the Boundary, and
  only pseudonymous Observations are queued.
- Bounded: live sources (`offer`) never block; when full, the OLDEST observation is dropped and
  counted (fresh data matters more than old on a live radio). Recorded sources (`put_many`)
  wait for room, so a replay never loses anything.
- Repeated, unchanged BLE adverts are throttled per device (core.throttle) before anything
  else is spent on them.
- One consumer drains whole batches (`get_batch`): one wake-up per burst, not per item.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable

from presence_gateway.core.model import Observation, Rejection, Sighting
from presence_gateway.core.privacy import Boundary
from presence_gateway.core.throttle import AdvertThrottle


class ObservationChannel:
    def __init__(self, boundary: Boundary, maxsize: int = 10000,
                 throttle: AdvertThrottle | None = None) -> None:
        self.boundary = boundary
        self.throttle = throttle or AdvertThrottle(0.0)
        self.maxsize = maxsize
        self._items: deque[Observation] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self.drops = 0
        self.rejects: Counter[str] = Counter()
        self.received = 0

    # -- Sink protocol (drivers) ----------------------------------------------------------
    def offer(self, sighting: Sighting) -> None:
        if not self.throttle.admit(sighting):
            return
        obs = self.boundary.admit(sighting)
        if obs is None:
            return
        items = self._items
        if len(items) >= self.maxsize:
            items.popleft()
            self.drops += 1
        items.append(obs)
        self.received += 1
        self._ready.set()

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        admit = self.boundary.admit
        throttle = self.throttle.admit
        items = self._items
        for s in sightings:
            if not throttle(s):
                continue
            while len(items) >= self.maxsize:
                self._room.clear()
                self._ready.set()
                await self._room.wait()
            obs = admit(s)
            if obs is not None:
                items.append(obs)
                self.received += 1
        self._ready.set()

    def reject(self, rejection: Rejection) -> None:
        self.rejects[f"{rejection.radio.value}:{rejection.reason}"] += 1

    # -- consumer ---------------------------------------------------------------------------
    async def get_batch(self, limit: int = 4096) -> list[Observation]:
        """Wait for observations and return up to `limit` of them; [] once closed and empty."""
        while not self._items:
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        n = min(limit, len(items))
        batch = [items.popleft() for _ in range(n)]
        self._room.set()
        return batch

    def close(self) -> None:
        """No more input: the consumer drains what is queued, then gets []."""
        self._closed = True
        self._ready.set()

    @property
    def depth(self) -> int:
        return len(self._items)
