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
    """Put the delivered rows with seq in [first, last] back in the queue, unchanged."""
    async with conn.execute(
            "SELECT n, id, seq, topic, payload, qos, retain, created, anon,"
            f" delivered_at, {COST_SQL} FROM outbox WHERE seq BETWEEN ? AND ?"
            " ORDER BY seq", (first, last)) as cur:
        rows = list(await cur.fetchall())
    again = [r for r in rows if r[9] is not None]
    await conn.executemany("DELETE FROM outbox WHERE n = ?", [(r[0],) for r in again])
    await conn.executemany(INSERT, [(*r[1:8], now, r[8]) for r in again])
    return Requeued(len(again), len(rows) - len(again), tuple(r[2] for r in rows),
                    sum(r[10] for r in again))


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
