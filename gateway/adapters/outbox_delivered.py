"""Shell: delivered rows kept for `events.resend` (SQL on the writer connection).

Invariants:
- A PUBACKed row is marked (`delivered_at`), never changed otherwise, until the resend window
  or the byte cap drops it, or `requeue` puts it back in the queue: same id, seq, topic and
  bytes, a NEW key `n` (a reader's cursor is past the old one), deleted first so there is
  still one row per event id.
- Every function runs inside the caller's transaction and returns what it changed, so the
  Outbox's in-memory counters follow the file exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from presence_gateway.adapters.outbox_budget import COST_SQL

WAITING = "delivered_at IS NULL"
INSERT = ("INSERT OR IGNORE INTO outbox (id, seq, topic, payload, qos, retain, created,"
          " stored_at, anon) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True, slots=True)
class Requeued:
    """What `requeue` did for a sequence range."""

    requeued: int                 # delivered rows put back in the queue
    waiting: int                  # rows in the range that had not been delivered yet
    held: tuple[int, ...]         # every sequence number of the range still in the file
    freed: int = 0                # their cost, no longer counted as delivered


async def mark(conn: aiosqlite.Connection, ranges: Sequence[tuple[int, int]],
               now: float) -> tuple[int, int]:
    """Mark the waiting rows with keys in `ranges` delivered: (rows, their cost)."""
    rows = cost = 0
    for lo, hi in ranges:
        async with conn.execute(
                f"UPDATE outbox SET delivered_at=? WHERE n BETWEEN ? AND ? AND {WAITING}"
                f" RETURNING {COST_SQL}", (now, lo, hi)) as cur:
            costs = [r[0] for r in await cur.fetchall()]
        rows += len(costs)
        cost += sum(costs)
    return rows, cost


async def requeue(conn: aiosqlite.Connection, first: int, last: int, now: float) -> Requeued:
    """Put the delivered rows with seq in [first, last] back in the queue, unchanged.

    The bytes move inside SQLite (through a temporary table, in seq order), never through
    Python: a range may hold up to core.resend.MAX_SPAN events."""
    async with conn.execute("SELECT seq, delivered_at IS NULL FROM outbox"
                            " WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)) as cur:
        found = list(await cur.fetchall())
    again = sum(1 for _, waiting in found if not waiting)
    freed = 0
    if again:
        where = "seq BETWEEN ? AND ? AND delivered_at IS NOT NULL"
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS requeue AS SELECT id, seq, topic, payload, qos,"
            " retain, created, anon FROM outbox WHERE 0")
        await conn.execute("DELETE FROM temp.requeue")
        await conn.execute(f"INSERT INTO temp.requeue SELECT id, seq, topic, payload, qos,"
                           f" retain, created, anon FROM outbox WHERE {where} ORDER BY seq",
                           (first, last))
        async with conn.execute(f"SELECT sum({COST_SQL}) FROM temp.requeue") as cur:
            row = await cur.fetchone()
        freed = int(row[0] or 0) if row else 0
        await conn.execute(f"DELETE FROM outbox WHERE {where}", (first, last))
        await conn.execute("INSERT INTO outbox (id, seq, topic, payload, qos, retain, created,"
                           " stored_at, anon) SELECT id, seq, topic, payload, qos, retain,"
                           " created, ?, anon FROM temp.requeue ORDER BY rowid", (now,))
        await conn.execute("DELETE FROM temp.requeue")
    return Requeued(again, len(found) - again, tuple(s for s, _ in found), freed)


def ranges(keys: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted keys -> inclusive (lo, hi) runs; acks arrive nearly in order, so runs are long."""
    ordered = sorted(keys)
    out: list[tuple[int, int]] = []
    if not ordered:
        return out
    lo = hi = ordered[0]
    for k in ordered[1:]:
        if k == hi + 1:
            hi = k
        elif k != hi:
            out.append((lo, hi))
            lo = hi = k
    out.append((lo, hi))
    return out
