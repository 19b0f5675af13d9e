"""Read-only questions the dashboard asks the central database (SQLite or PostgreSQL).

Invariants: SELECTs only, apart from one idempotent index the per-store time-range queries
need; `?` placeholders (the CentralDb converts them for PostgreSQL); event payloads are
parsed here and handed to aggregate.py as plain rows; no device key leaves this module (the
columns read are type, time and the aggregate fields of data).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import orjson

from presence_gateway.central.dashboard.aggregate import Row, day_window
from presence_gateway.central.db import CentralDb

DAY_TYPES = ("presence.footfall", "presence.visit.ended", "presence.identity.linked",
             "presence.offer.triggered")


async def prepare(db: CentralDb) -> None:
    await db.execute("CREATE INDEX IF NOT EXISTS events_store_time ON events (store, time)")
    await db.execute("CREATE INDEX IF NOT EXISTS events_type_time ON events (type, time)")


async def stores(db: CentralDb) -> list[str]:
    rows = await db.fetch("SELECT DISTINCT store FROM gateways UNION SELECT DISTINCT store"
                          " FROM footfall ORDER BY 1")
    return [str(r[0]) for r in rows]


async def day_rows(db: CentralDb, store: str, day: date, tz: str,
                   types: Sequence[str] = DAY_TYPES) -> list[Row]:
    start, end = day_window(day, tz)
    marks = ", ".join("?" * len(types))
    rows = await db.fetch(
        f"SELECT type, time, data FROM events WHERE store = ? AND time >= ? AND time < ?"
        f" AND type IN ({marks}) ORDER BY time", store, start, end, *types)
    out = []
    for etype, time, data in rows:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(body, dict):
            out.append(Row(str(etype), str(time), body))
    return out


async def visits_on(db: CentralDb, store: str, day: date, tz: str) -> int:
    """Walk-ins of one local day: the footfall intervals' entries, summed."""
    start, end = day_window(day, tz)
    v = await db.fetchval("SELECT sum(entries) FROM footfall WHERE store = ? AND time >= ?"
                          " AND time < ?", store, start, end)
    return int(v or 0)


async def same_weekday_last_week(db: CentralDb, store: str, day: date, tz: str) -> int | None:
    v = await visits_on(db, store, day - timedelta(days=7), tz)
    return v or None


async def health(db: CentralDb, store: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT store, gateway, status, status_time, last_seen, last_sequence, outbox_depth,"
           " counting FROM gateways")
    args: tuple[Any, ...] = ()
    if store is not None:
        sql += " WHERE store = ?"
        args = (store,)
    gaps = {(str(s), str(g)): int(n or 0) for s, g, n in await db.fetch(
        "SELECT store, gateway, sum(last_seq - first_seq + 1) FROM gaps GROUP BY store,"
        " gateway")}
    out = []
    for s, g, status, status_time, seen, seq, depth, counting in await db.fetch(
            sql + " ORDER BY 1, 2", *args):
        out.append({"store": s, "gateway": g, "status": status or "unknown",
                    "status_time": status_time, "last_seen": seen, "last_sequence": seq,
                    "outbox_depth": depth, "gaps_reported": gaps.get((str(s), str(g)), 0),
                    "counting": counting})
    return out


async def offers_by_rule(db: CentralDb, store: str | None, start: str, end: str
                         ) -> dict[str, int]:
    # From the offer events in the time range (index type, time), joined to their rows.
    sql = ("SELECT o.offer_id, count(*) FROM events e JOIN offers o ON o.event_id = e.id"
           " WHERE e.type = 'presence.offer.triggered' AND e.time >= ? AND e.time < ?")
    args: list[Any] = [start, end]
    if store is not None:
        sql += " AND o.store = ?"
        args.append(store)
    return {str(k): int(n) for k, n in await db.fetch(sql + " GROUP BY o.offer_id", *args)}
