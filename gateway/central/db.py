"""Central database shell: SQLite (aiosqlite, the embedded default) or PostgreSQL (asyncpg).

Invariants:
- Writes are idempotent by event id: `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING`; a
  conflict is a duplicate (counted in `counters.duplicates`), and only a new `events` row
  adds its typed row (visits, footfall, occupancy, links, offers). One `commit` is one
  transaction: events, typed rows, gateway positions and statuses land together or not at all,
  so a consumer killed mid-batch leaves nothing half-applied, and the broker redelivers what
  was not acknowledged.
- `events.applied` grows with every new row (AUTOINCREMENT / BIGSERIAL): the order in which
  events were applied, which the tests compare with `sequence` per gateway.
- `gateways.last_sequence` only ever grows (max of old and new): two consumers that overlap
  during a hand-over cannot move it back.
- Partition leases (`leases`, `members`) live in the same database, so the consumers need no
  coordination service besides the database they already write to. Times are wall-clock
  seconds from the consumers (keep their clocks in sync, e.g. NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiosqlite
import orjson

from presence_gateway.central.model import (
    Event,
    Gap,
    Status,
    counting,
    outbox_depth,
    projection,
)
from presence_gateway.central.schema import ADDED, schema
from presence_gateway.errors import ConfigError, StoreError


@dataclass(slots=True)
class Commit:
    """One transaction's worth of consumer output."""

    events: list[Event] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    positions: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # key -> last seq
    depths: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    countings: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # placement, words

    def note(self, ev: Event) -> None:
        """What a gateway's stats event says of the gateway (its outbox depth, its Wi-Fi
        placement in words), kept per gateway: the last one of the batch wins."""
        depth = outbox_depth(ev)
        if depth is not None:
            self.depths[ev.key] = (ev.store, ev.gateway, depth)
        text = counting(ev)
        if text is not None:
            self.countings[ev.key] = (ev.store, ev.gateway, text)


class CentralDb:
    """The consumer's database; `open_db(url)` picks the backend."""

    pg = False
    greatest = "max"

    async def execute(self, sql: str, *args: Any) -> None:
        raise NotImplementedError

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def setup(self) -> None:
        async with self.transaction():
            if self.pg:  # consumers starting together must not race on CREATE TABLE
                await self.execute("SELECT pg_advisory_xact_lock(1163150413)")
            for stmt in schema(self.pg):
                await self.execute(stmt)
            for table, column, kind in ADDED:  # a database made by an older version
                await self._add_column(table, column, kind)

    async def _add_column(self, table: str, column: str, kind: str) -> None:
        if self.pg:
            await self.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        elif column not in {r[1] for r in await self.fetch(f"PRAGMA table_info({table})")}:
            await self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    # -- consumer ---------------------------------------------------------------------------
    async def position(self, key: str) -> int | None:
        v = await self.fetchval("SELECT last_sequence FROM gateways WHERE key = ?", key)
        return None if v is None else int(v)

    async def commit(self, c: Commit) -> int:
        """Apply `c` in one transaction; returns how many events were duplicates by id."""
        now = time.time()
        dup = 0
        g = self.greatest
        async with self.transaction():
            for ev in c.events:
                applied = await self.fetchval(
                    "INSERT INTO events (id, store, gateway, seq, type, time, subject, data,"
                    " received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO NOTHING RETURNING applied",
                    ev.id, ev.store, ev.gateway, ev.seq, ev.type, ev.time, ev.subject,
                    orjson.dumps(ev.data).decode(), now)
                if applied is None:
                    dup += 1
                    continue
                row = projection(ev)
                if row is not None:
                    table, cols, vals = row
                    marks = ", ".join("?" * len(cols))
                    await self.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                                       f" ({marks}) ON CONFLICT (event_id) DO NOTHING", *vals)
            if dup:
                await self.execute("UPDATE counters SET value = value + ? WHERE name ="
                                   " 'duplicates'", dup)
            for key, (store, gw, seq) in c.positions.items():
                await self.execute(
                    "INSERT INTO gateways (key, store, gateway, last_sequence, last_seen)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    f" last_sequence = {g}(coalesce(gateways.last_sequence,"
                    " excluded.last_sequence), excluded.last_sequence),"
                    " last_seen = excluded.last_seen", key, store, gw, seq, now)
            for key, (store, gw, depth) in c.depths.items():
                await self.execute(
                    "INSERT INTO gateways (key, store, gateway, outbox_depth) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET outbox_depth = excluded.outbox_depth",
                    key, store, gw, depth)
            for key, (store, gw, text) in c.countings.items():
                await self.execute(
                    "INSERT INTO gateways (key, store, gateway, counting) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET counting = excluded.counting",
                    key, store, gw, text)
            for st in c.statuses:
                await self.execute(
                    "INSERT INTO gateways (key, store, gateway, status, status_time)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " status = excluded.status, status_time = excluded.status_time",
                    f"{st.store}/{st.gateway}", st.store, st.gateway, st.state, now)
            for gap in c.gaps:
                await self.execute(
                    "INSERT INTO gaps (store, gateway, first_seq, last_seq, found)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (store, gateway, first_seq) DO NOTHING",
                    gap.store, gap.gateway, gap.first, gap.last, now)
        return dup

    # -- partition leases -------------------------------------------------------------------
    async def heartbeat(self, owner: str, now: float, ttl: float) -> list[str]:
        """Announce `owner` alive until now+ttl; returns the live members, sorted."""
        async with self.transaction():
            await self.execute("INSERT INTO members (owner, expires) VALUES (?, ?)"
                               " ON CONFLICT (owner) DO UPDATE SET expires = excluded.expires",
                               owner, now + ttl)
            rows = await self.fetch("SELECT owner FROM members WHERE expires >= ?", now)
        return sorted(str(r[0]) for r in rows)

    async def claim(self, partition: str, owner: str, now: float, ttl: float) -> bool:
        async with self.transaction():
            await self.execute(
                "INSERT INTO leases (partition, owner, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (partition) DO UPDATE SET owner = excluded.owner,"
                " expires = excluded.expires, consuming = NULL"
                " WHERE leases.owner = excluded.owner OR leases.expires < ?",
                partition, owner, now + ttl, now)
            holder = await self.fetchval("SELECT owner FROM leases WHERE partition = ?",
                                         partition)
        return bool(holder == owner)

    async def renew(self, owner: str, now: float, ttl: float) -> set[str]:
        """Extend every lease `owner` still holds; returns those partitions."""
        async with self.transaction():
            await self.execute("UPDATE leases SET expires = ? WHERE owner = ?", now + ttl, owner)
            rows = await self.fetch("SELECT partition FROM leases WHERE owner = ?", owner)
        return {str(r[0]) for r in rows}

    async def consuming(self, partition: str, owner: str, now: float) -> None:
        """The holder's session is subscribed: from now on nothing of the partition is lost."""
        await self.execute("UPDATE leases SET consuming = ? WHERE partition = ? AND owner = ?",
                           now, partition, owner)

    async def release(self, partition: str, owner: str) -> None:
        await self.execute("DELETE FROM leases WHERE partition = ? AND owner = ?", partition,
                           owner)

    async def leave(self, owner: str) -> None:
        """A clean stop: the others need not wait for our leases to expire."""
        async with self.transaction():
            await self.execute("DELETE FROM leases WHERE owner = ?", owner)
            await self.execute("DELETE FROM members WHERE owner = ?", owner)

    # -- report -----------------------------------------------------------------------------
    async def report(self) -> dict[str, Any]:
        events = int(await self.fetchval("SELECT count(*) FROM events") or 0)
        dups = int(await self.fetchval("SELECT value FROM counters WHERE name = 'duplicates'")
                   or 0)
        missing = {f"{r[0]}/{r[1]}": int(r[2]) for r in await self.fetch(
            # DISTINCT: a gateway whose database was reset starts again at 1 (new ids).
            "SELECT store, gateway, max(seq) - min(seq) + 1 - count(DISTINCT seq) FROM events"
            " GROUP BY store, gateway")}
        skipped = int(await self.fetchval("SELECT count(*) FROM gaps") or 0)
        gateways: dict[str, Any] = {}
        for key, last, status, seen, depth, placement in await self.fetch(
                "SELECT key, last_sequence, status, last_seen, outbox_depth, counting"
                " FROM gateways ORDER BY key"):
            gateways[str(key)] = {
                "last_sequence": None if last is None else int(last),
                "status": status or "unknown", "last_seen": seen,
                "outbox_depth": None if depth is None else int(depth),
                "gaps": missing.get(str(key), 0), "wifi_placement": placement}
        parts = {str(p): {"owner": str(o), "consuming": c is not None}
                 for p, o, c in await self.fetch("SELECT partition, owner, consuming FROM leases"
                                                 " WHERE expires >= ? ORDER BY partition",
                                                 time.time())}
        return {"events": events, "duplicates": dups, "gaps": sum(missing.values()),
                "holes_skipped": skipped, "gateways": gateways, "partitions": parts}


class SqliteDb(CentralDb):
    """One connection; transactions of concurrent partitions take turns (a lock), and a
    statement outside a transaction waits for the open one, never joins it."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()
        self._in_tx: contextvars.ContextVar[bool] = contextvars.ContextVar("in_tx", default=False)

    @classmethod
    async def open(cls, path: str) -> SqliteDb:
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
            # Several consumers on one machine may share the file: WAL + a busy timeout.
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                           "PRAGMA busy_timeout=10000"):
                await conn.execute(pragma)
        except Exception as exc:
            raise StoreError(f"{path}: cannot open the central database ({exc})") from exc
        return cls(conn)

    async def execute(self, sql: str, *args: Any) -> None:
        if self._in_tx.get():
            await self.conn.execute(sql, args)
            return
        async with self._lock:
            await self.conn.execute(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        if self._in_tx.get():
            return await self._fetch(sql, args)
        async with self._lock:
            return await self._fetch(sql, args)

    async def _fetch(self, sql: str, args: tuple[Any, ...]) -> list[Sequence[Any]]:
        async with self.conn.execute(sql, args) as cur:
            return list(await cur.fetchall())

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._lock:
            token = self._in_tx.set(True)
            try:
                try:
                    await self.conn.execute("BEGIN IMMEDIATE")
                    yield
                    await self.conn.execute("COMMIT")
                except BaseException:
                    # Also when BEGIN itself was interrupted: a cancelled await does not stop
                    # aiosqlite's worker thread, which runs the queued BEGIN after its caller
                    # has gone and would leave the connection inside a transaction for good
                    # (every later BEGIN failing "within a transaction": a consumer restarted
                    # on this connection never held a lease). `rollback()` is queued behind
                    # whatever statement is still pending and does nothing when no
                    # transaction is open (BEGIN failed, COMMIT went through). The lock is
                    # held until it has run, so no other task's BEGIN can come first.
                    await _to_the_end(self.conn.rollback())
                    raise
            finally:
                self._in_tx.reset(token)

    async def close(self) -> None:
        await self.conn.close()


async def _to_the_end(aw: Awaitable[None]) -> None:
    """Await `aw` until it is done even if cancelled meanwhile (then re-raise the
    cancellation): clean-up that must finish before its caller lets go of a lock."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved (not logged as lost): the caller gets the cancellation
        raise asyncio.CancelledError
    task.result()


class PostgresDb(CentralDb):
    """A small pool: partitions commit in parallel, each transaction on its own connection."""

    pg = True
    greatest = "GREATEST"

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._sql: dict[str, str] = {}
        self._conn: contextvars.ContextVar[Any] = contextvars.ContextVar("conn", default=None)

    @classmethod
    async def open(cls, url: str) -> PostgresDb:
        import asyncpg  # only a PostgreSQL deployment needs it loaded
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=8, timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc})"
                             ) from exc
        return cls(pool)

    def _convert(self, sql: str) -> str:
        """`?` placeholders -> `$1, $2, ...` (our SQL has no `?` inside literals)."""
        out = self._sql.get(sql)
        if out is None:
            parts = sql.split("?")
            out = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
            self._sql[sql] = out
        return out

    async def execute(self, sql: str, *args: Any) -> None:
        conn = self._conn.get()
        if conn is not None:
            await conn.execute(self._convert(sql), *args)
            return
        async with self.pool.acquire() as conn:
            await conn.execute(self._convert(sql), *args)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        conn = self._conn.get()
        if conn is not None:
            return list(await conn.fetch(self._convert(sql), *args))
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(self._convert(sql), *args))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.__aenter__()  # (a cancelled BEGIN: the pool's release rolls back)
            token = self._conn.set(conn)
            try:
                yield
            except BaseException as e:
                # The rollback runs to the end even if cancelled again (a task group's
                # cancellation, then a timeout's): cut short, it was left to the pool's
                # release, which logs an ERROR ("Resetting connection with an active
                # transaction"). asyncpg's own `async with` could not hold it.
                await _to_the_end(tx.__aexit__(type(e), e, e.__traceback__))
                raise
            finally:
                self._conn.reset(token)
            await tx.__aexit__(None, None, None)  # COMMIT

    async def close(self) -> None:
        await self.pool.close()


async def open_db(url: str) -> CentralDb:
    """`sqlite:///PATH` (or a bare path) or `postgresql://...`; the schema is created."""
    scheme = urlsplit(url).scheme
    db: CentralDb
    if scheme in ("postgresql", "postgres"):
        db = await PostgresDb.open(url)
    elif scheme == "sqlite":  # sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's)
        db = await SqliteDb.open(url[len("sqlite:///"):])
    elif scheme == "":
        db = await SqliteDb.open(url)
    else:
        raise ConfigError("--db", "", None, f'expected sqlite:///PATH or postgresql://..., got'
                          f' "{scheme}://..."')
    await db.setup()
    return db
