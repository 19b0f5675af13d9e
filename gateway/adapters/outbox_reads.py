"""Shell: the outbox's reads: waiting rows oldest first (the publisher), the sequence bounds
still held (the resend handler), and the figures (stats).

A mixin of `Outbox` (adapters/outbox.py), kept apart so the outbox module stays small; the
invariants are the outbox's. Nothing here writes: queries run under the writer lock, so they
never see another task's uncommitted batch, and the figures are the counters the writer keeps
in memory (no query).
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

import aiosqlite

from presence_gateway.adapters.outbox_delivered import WAITING as _WAITING
from presence_gateway.adapters.outbox_schema import scalar, store_error


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """An outbox row: the message plus its row key (`rowid`) used to delete it after PUBACK."""

    rowid: int
    id: str
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created: float


class OutboxReads:
    """Reads of the outbox file and its figures; `Outbox` provides the state below."""

    path: str
    _conn: aiosqlite.Connection
    _lock: asyncio.Lock
    _depth: int
    _last_seq: int

    async def oldest(self, limit: int, *, after: int = 0) -> list[StoredMessage]:
        """Up to `limit` waiting rows with rowid > `after`, oldest first."""
        try:
            # Under the lock: never read another task's uncommitted batch.
            async with self._lock, self._conn.execute(
                    "SELECT n, id, seq, topic, payload, qos, retain, created FROM outbox"
                    f" WHERE n > ? AND {_WAITING} ORDER BY n LIMIT ?", (after, limit)) as cur:
                rows = await cur.fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise store_error(exc, self.path) from exc
        return [StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7])
                for r in rows]

    # -- resend ---------------------------------------------------------------------------
    async def first_seq_since(self, created: float) -> int | None:
        """The lowest seq still held whose event time is at or after `created`."""
        async with self._lock:
            value = await scalar(self._conn, "SELECT min(seq) FROM outbox WHERE created >= ?",
                                 None, (created,))
        return None if value is None else int(value)

    async def oldest_seq(self) -> int | None:
        async with self._lock:
            value = await scalar(self._conn, "SELECT min(seq) FROM outbox", None)
        return None if value is None else int(value)

    # -- figures --------------------------------------------------------------------------
    async def depth(self) -> int:
        """Rows waiting (kept in memory: count(*) is a full scan in SQLite)."""
        return self._depth

    async def last_seq(self) -> int:
        return self._last_seq

    @property
    def size(self) -> int:
        """Synchronous twin of `depth()` for stats snapshots."""
        return self._depth
