"""Shell: which Home Assistant discovery configs this gateway has published (table
`ha_discovery`, next to the outbox), so a zone removed or discovery switched off can be
removed from HA (an empty retained payload on each stale config topic).

Invariants: shares the outbox's writer connection and writes only inside its `transaction()`;
holds topic names only (no personal data).
"""

from __future__ import annotations

from collections.abc import Iterable

from presence_gateway.adapters.offer_store import Transactor

TABLE = "ha_discovery"


class DiscoveryStore:
    def __init__(self, db: Transactor) -> None:
        self._db = db

    async def published(self) -> list[str]:
        async with self._db.transaction() as conn:
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (topic TEXT PRIMARY KEY)"
                               " WITHOUT ROWID")
            async with conn.execute(f"SELECT topic FROM {TABLE} ORDER BY topic") as cur:
                return [str(row[0]) for row in await cur.fetchall()]

    async def replace(self, topics: Iterable[str]) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(f"DELETE FROM {TABLE}")
            await conn.executemany(f"INSERT INTO {TABLE} (topic) VALUES (?)",
                                   [(t,) for t in topics])
