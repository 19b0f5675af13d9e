"""Shell: the offer caps ledger in SQLite (table `offer_ledger`), next to the outbox.

Invariants:
- One row per offer that fired: (ts, offer_id, customer_id, visit_id). Loaded into the pure
  engine at start (`OfferEngine.load_ledger`) so cooldowns and caps survive a restart; new rows
  come from `OfferEngine.ledger_entries()` and are appended in one transaction.
- The table is named `offer_ledger` and has a `customer_id` column: the identity shell's
  `forget(customer)` deletes a customer's rows by that name (right to erasure). No other
  personal data is stored here; customer ids are the central system's opaque ids.
- It shares the outbox's single writer connection and writes only inside the outbox's
  `transaction()` (see store.py), so its statements never interleave with an outbox batch.
- Rows older than the rules' horizon (`RuleSet.horizon_s`, at least 7 days) are pruned; the
  engine never needs them.
- sqlite3 errors leave only as StoreError (raised by the outbox's transaction()).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

import aiosqlite

from presence_gateway.core.offers.ledger import LedgerEntry

TABLE = "offer_ledger"
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        n INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        offer_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        visit_id TEXT NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_customer ON {TABLE} (customer_id)",
)
_INSERT = f"INSERT INTO {TABLE} (ts, offer_id, customer_id, visit_id) VALUES (?, ?, ?, ?)"


class Transactor(Protocol):
    """What the ledger needs from the outbox (gateway.store.Outbox fits)."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]: ...


class OfferLedgerStore:
    def __init__(self, db: Transactor) -> None:
        self._db = db

    async def init(self) -> None:
        """Create the table if needed (idempotent; the schema has no versions yet)."""
        async with self._db.transaction() as conn:
            for sql in _SCHEMA:
                await conn.execute(sql)

    async def load(self, since: float) -> list[LedgerEntry]:
        """Rows with ts >= since, oldest first, for `OfferEngine.load_ledger`."""
        async with self._db.transaction() as conn, conn.execute(
                f"SELECT ts, offer_id, customer_id, visit_id FROM {TABLE} WHERE ts >= ?"
                " ORDER BY ts, n", (since,)) as cur:
            rows = await cur.fetchall()
        return [LedgerEntry(float(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def append(self, rows: Sequence[LedgerEntry]) -> None:
        if rows:
            async with self._db.transaction() as conn:
                await append_in(conn, rows)

    async def prune(self, before: float) -> int:
        """Delete rows older than `before`; returns how many."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(f"DELETE FROM {TABLE} WHERE ts < ?", (before,))
            return cur.rowcount if cur.rowcount is not None else 0

    async def forget(self, customer_id: str) -> int:
        """Erase a customer's rows (the identity shell's `forget` does the same by name)."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(f"DELETE FROM {TABLE} WHERE customer_id = ?",
                                     (customer_id,))
            return cur.rowcount if cur.rowcount is not None else 0


async def append_in(conn: aiosqlite.Connection, rows: Sequence[LedgerEntry]) -> None:
    """Append inside a transaction the caller holds, e.g. the one that stores the offer
    messages in the outbox, so a crash can never keep the message and lose the cap row."""
    await conn.executemany(_INSERT, [(r.ts, r.offer_id, r.customer_id, r.visit_id)
                                     for r in rows])
