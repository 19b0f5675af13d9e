"""Shell: the gateway's one continuity snapshot (table `continuity`, next to the outbox).

Invariants: one row at most (the newest snapshot replaces the last); it shares the outbox's
writer connection and writes only inside its `transaction()`; the blob is authenticated and
checked by core/continuity.py, this module only stores bytes.
"""

from __future__ import annotations

from presence_gateway.adapters.offer_store import Transactor

TABLE = "continuity"
_SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1),"
           " taken REAL NOT NULL, blob BLOB NOT NULL)")


class SnapshotStore:
    def __init__(self, db: Transactor) -> None:
        self._db = db

    async def load(self) -> bytes | None:
        async with self._db.transaction() as conn:
            await conn.execute(_SCHEMA)
            async with conn.execute(f"SELECT blob FROM {TABLE} WHERE id = 1") as cur:
                row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def save(self, taken: float, blob: bytes) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute(f"INSERT OR REPLACE INTO {TABLE} (id, taken, blob) VALUES"
                               " (1, ?, ?)", (taken, blob))

    async def clear(self) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute(f"DELETE FROM {TABLE}")
