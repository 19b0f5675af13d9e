"""When units are due to end: a timing wheel of one-second buckets, filed lazily.

The engine used to keep its units in an OrderedDict in last-sighting order and move a unit to
the end on every reading. With a crowd present that move is a dear part of a reading: it
unlinks and relinks three nodes of a linked list that are out of the CPU cache. Here a
reading moves nothing:

- A unit is filed under the second of its deadline as it stood when filed: its last reading
  plus the horizon, or plus the visit timeout at its stretch while a visit is open.
- When that second has passed, the unit is looked at once: ended if its deadline, from its
  own fields now, has passed; else filed again under the new deadline (it was heard since).
  A unit heard every minute is filed again about once a horizon (5 min), not once a reading.
- A deadline moves later with every reading, which a look finds; it moves earlier only when
  a visit opens (the timeout is shorter than the horizon) or its stretch shrinks under a
  channel plan: the engine then files the unit again (`sooner`) and its older entry goes
  stale (`due_at` names the live one).
- Units come out in bucket order, not in exact deadline order within a second; every unit is
  ended at the `tick` that an exact order would end it at (tested against brute force).

Invariants: every tracked unit has one live entry, in the bucket of its `due_at`; stale
entries are dropped when their bucket is looked at (at most one per `sooner`, within a
horizon); `_heap` holds the index of every bucket, once.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import TYPE_CHECKING

from presence_gateway.core.state import Snapshotted, restored

if TYPE_CHECKING:
    from collections.abc import Iterable

    from presence_gateway.core.presence.units import Unit

BUCKET_S = 1.0
OUT = -1.0  # the `due_at` of a unit not in the wheel (taken out, or not filed yet)


def deadline(u: Unit, horizon: float, timeout: float) -> float:
    """When `u` ends if it is not heard again."""
    d = u.last + horizon
    if u.visit is not None:
        v = u.last + timeout * u.stretch
        if v < d:
            return v
    return d


class ExpiryWheel(Snapshotted):
    def __init__(self) -> None:
        self._buckets: dict[int, list[Unit]] = {}
        # The index of every bucket, a heap: the lowest is known at once, so the tick of a
        # second with nothing due costs one comparison (a walk second by second, with a min()
        # over the buckets after a gap, was ~40 % of a real day's ticks).
        self._heap: list[int] = []

    def __setstate__(self, state: object) -> None:
        """Unpickle (core/continuity.py), also a wheel of an earlier version, which kept the
        lowest bucket as a walked-up `_front` instead of a heap."""
        attrs = restored(state)
        attrs.pop("_front", None)
        self._buckets = attrs["_buckets"]
        self._heap = attrs["_heap"] if "_heap" in attrs else sorted(self._buckets)

    def entries(self) -> int:
        """Entries filed, stale ones included (for tests and status)."""
        return sum(len(b) for b in self._buckets.values())

    def file(self, u: Unit, at: float) -> None:
        """File `u` to be looked at `at` (a time already past: at the next look)."""
        b = int(at // BUCKET_S)
        u.due_at = at
        bucket = self._buckets.get(b)
        if bucket is None:
            self._buckets[b] = [u]
            heappush(self._heap, b)
        else:
            bucket.append(u)

    def sooner(self, u: Unit, at: float) -> None:
        """`u`'s deadline moved earlier, to `at`: file it there if that is an earlier second."""
        if int(at // BUCKET_S) < int(u.due_at // BUCKET_S):
            self.file(u, at)

    def idle(self, now: float) -> bool:
        """True when no unit can be due at `now` (every bucket lies after its second): a
        tick then costs a comparison, not a look (a tick runs every second, most find
        nothing)."""
        heap = self._heap
        return not heap or now // BUCKET_S < heap[0]

    def due(self, now: float, horizon: float, timeout: float, budget: int
            ) -> tuple[list[Unit], bool]:
        """Take out the units due at `now`, at most `budget` of them, oldest bucket first.
        True when none is left due."""
        ended: list[Unit] = []
        buckets, heap = self._buckets, self._heap
        limit = int(now // BUCKET_S)
        while heap and heap[0] <= limit:
            b = heappop(heap)
            bucket = buckets.pop(b)
            kept: list[Unit] = []
            for i, u in enumerate(bucket):
                if int(u.due_at // BUCKET_S) != b:
                    continue  # stale: filed again since, or taken out
                d = deadline(u, horizon, timeout)
                if d <= now:
                    if len(ended) >= budget:
                        self._put_back(b, kept + bucket[i:])
                        return ended, False
                    u.due_at = OUT
                    ended.append(u)
                elif int(d // BUCKET_S) > b:
                    self.file(u, d)  # heard since it was filed
                else:
                    kept.append(u)  # due later within this very second
            if kept:
                self._put_back(b, kept)
                break  # this was the bucket of `now`: none later is due
        return ended, True

    def oldest(self, count: int, horizon: float, timeout: float) -> list[Unit]:
        """Take out `count` units, earliest deadline first (the cap on tracked devices);
        those heard since they were filed are filed again instead."""
        out: list[Unit] = []
        buckets, heap = self._buckets, self._heap
        while len(out) < count and heap:
            b = heappop(heap)
            bucket = buckets.pop(b)
            while bucket and len(out) < count:
                u = bucket.pop()
                if int(u.due_at // BUCKET_S) != b:
                    continue
                d = deadline(u, horizon, timeout)
                if int(d // BUCKET_S) > b:
                    self.file(u, d)
                else:
                    u.due_at = OUT
                    out.append(u)
            if bucket:
                self._put_back(b, bucket)
        return out

    def rebuild(self, units: Iterable[Unit], horizon: float, timeout: float) -> None:
        """File every unit anew (a snapshot of an older version, new settings)."""
        self._buckets.clear()
        self._heap.clear()
        for u in units:
            self.file(u, deadline(u, horizon, timeout))

    def _put_back(self, b: int, units: list[Unit]) -> None:
        """Units taken from bucket `b` and not ended, ahead of anything filed there since."""
        later = self._buckets.get(b)
        if later is None:
            self._buckets[b] = units
            heappush(self._heap, b)
        else:
            self._buckets[b] = units + later
