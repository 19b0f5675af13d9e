"""Shell: erasure for the identity registry: every stored trace of one customer in the file.

Kept apart from adapters/identity_store.py (`Registry.forget` and `apply_sync` call `erase`)
so the registry module stays small.

Invariants:
- `erase` runs inside the caller's transaction (the registry turns `secure_delete` on around
  it and compacts the file after it) and only deletes; it returns what it removed per table.
- Tables are found by their columns, not by name: every table with a `customer_id` column
  loses the customer's rows, every table with a `payload` column (the outbox: events not yet
  published) loses the rows whose payload names the customer, so a new table of another shell
  is covered without a change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiosqlite


@dataclass(frozen=True, slots=True)
class Erased:
    entries: int
    visits: int
    other_rows: dict[str, int]  # table -> rows (offer_ledger, outbox, ...)


async def _tables(conn: aiosqlite.Connection) -> dict[str, set[str]]:
    async with conn.execute("SELECT name FROM sqlite_master WHERE type='table'"
                            " AND name NOT LIKE 'sqlite_%'") as cur:
        names = [r[0] for r in await cur.fetchall()]
    out: dict[str, set[str]] = {}
    for name in names:
        async with conn.execute(f'PRAGMA table_info("{name}")') as cur:
            out[name] = {r[1] for r in await cur.fetchall()}
    return out


def _needles(customer_id: str) -> list[bytes]:
    """How an event payload names the customer (orjson compact, or json.dumps spacing)."""
    value = json.dumps(customer_id)
    return [f'"customer_id":{value}'.encode(), f'"customer_id": {value}'.encode()]


async def erase(conn: aiosqlite.Connection, customer_id: str) -> Erased:
    counts: dict[str, int] = {}
    for table, cols in (await _tables(conn)).items():
        n = 0
        if "customer_id" in cols:
            cur = await conn.execute(f'DELETE FROM "{table}" WHERE customer_id=?',
                                     (customer_id,))
            n += cur.rowcount
        if "payload" in cols:  # the outbox: events not yet published
            for needle in _needles(customer_id):
                cur = await conn.execute(
                    f'DELETE FROM "{table}" WHERE instr(CAST(payload AS BLOB), ?) > 0',
                    (needle,))
                n += cur.rowcount
        if n:
            counts[table] = n
    entries = counts.pop("identity_entries", 0)
    visits = counts.pop("identity_visits", 0)
    return Erased(entries, visits, counts)


def sum_erased(a: Erased, b: Erased) -> Erased:
    other = dict(a.other_rows)
    for k, v in b.other_rows.items():
        other[k] = other.get(k, 0) + v
    return Erased(a.entries + b.entries, a.visits + b.visits, other)
