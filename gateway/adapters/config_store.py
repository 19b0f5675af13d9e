"""Shell: settings a gateway received from central (table `remote_config`, next to the
outbox), so a restart keeps them instead of falling back to the file's.

Invariants: one row per section (`presence`), replaced whole; the text is stored exactly as
accepted (validated by the core before it gets here); it shares the outbox's writer connection
and writes only inside its `transaction()`.
"""

from __future__ import annotations

from presence_gateway.adapters.offer_store import Transactor

TABLE = "remote_config"
_SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE} (section TEXT PRIMARY KEY, version TEXT NOT"
           " NULL, text TEXT NOT NULL, applied_at REAL NOT NULL)")


class RemoteConfigStore:
    def __init__(self, db: Transactor) -> None:
        self._db = db

    async def load(self, section: str) -> tuple[str, str] | None:
        """(version, text) of the section, or None."""
        async with self._db.transaction() as conn:
            await conn.execute(_SCHEMA)
            async with conn.execute(f"SELECT version, text FROM {TABLE} WHERE section = ?",
                                    (section,)) as cur:
                row = await cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    async def save(self, section: str, version: str, text: str, at: float) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(_SCHEMA)
            await conn.execute(f"INSERT OR REPLACE INTO {TABLE} (section, version, text,"
                               " applied_at) VALUES (?, ?, ?, ?)", (section, version, text, at))
