"""Shell: the durable SQLite outbox (aiosqlite), and the one writer connection to the DB file.

Invariants:
- Every message is committed to SQLite before anyone may publish it; `append` writes a whole
  batch in ONE transaction (one fsync with synchronous=FULL), so a power cut loses at most the
  batch that was being committed, never part of one.
- Rows are read oldest first by an AUTOINCREMENT key (`n`), which never goes backwards even
  after the table empties, so a reader's cursor (`after=`) can never skip a newer row.
- A row is deleted only by `delete` (after the broker's PUBACK) or by the bounds: more than
  `max_rows` rows or stored longer than `max_age_s` (wall clock at append time, not the
  event's capture time) -> the oldest are dropped and counted in `dropped` (since open) and
  `dropped_total` (persisted).
- `last_seq` (highest seq ever appended) and `dropped_total` live in the `meta` table, so they
  survive deletion of every row and restarts.
- ONE writer connection per file. Other shells (identity registry, offers state, retention
  purge) share the file through their own tables via `outbox.connection`, and wrap every write
  in `async with outbox.transaction():` so their statements never interleave with an open
  outbox transaction. `PRAGMA user_version` belongs to this module; other shells keep their
  schema version in `meta` under their own key (e.g. 'schema.identity') or use
  CREATE TABLE IF NOT EXISTS.
- The DB file and its -wal/-shm companions are created with mode 0600 (pseudonymous data is
  still personal data).
- sqlite3/OS errors leave this module only as StoreError with an actionable message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from presence_gateway.core.model import OutboundMessage
from presence_gateway.errors import StoreError

SCHEMA_VERSION = 2

# Migrations by target user_version; each runs in its own transaction with the version bump.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE outbox (
               n INTEGER PRIMARY KEY AUTOINCREMENT,
               id TEXT NOT NULL,
               seq INTEGER NOT NULL,
               topic TEXT NOT NULL,
               payload BLOB NOT NULL,
               qos INTEGER NOT NULL,
               retain INTEGER NOT NULL,
               created REAL NOT NULL,
               stored_at REAL NOT NULL)""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta (key, value) VALUES ('last_seq', 0), ('dropped_total', 0)",
    ),
    # One row per event id: a message handed over twice is stored once (a duplicate can only
    # come from a bug upstream, and a consumer would drop it anyway; the disk need not).
    2: (
        "DELETE FROM outbox WHERE n NOT IN (SELECT min(n) FROM outbox GROUP BY id)",
        "CREATE UNIQUE INDEX outbox_id ON outbox (id)",
    ),
}

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: each commit fsyncs the WAL; commits are batched, so this costs one fsync per batch.
    "PRAGMA synchronous=FULL",
    # Checkpoint every ~4 MB of WAL and truncate it back to 8 MB at most: bounded SD-card usage.
    "PRAGMA wal_autocheckpoint=1000",
    "PRAGMA journal_size_limit=8388608",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

_INSERT = ("INSERT OR IGNORE INTO outbox (id, seq, topic, payload, qos, retain, created,"
           " stored_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


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


def _describe(exc: BaseException, path: str) -> str:
    """An installer-actionable sentence for a sqlite3/OS error on `path`."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if isinstance(exc, PermissionError) or name in ("SQLITE_READONLY", "SQLITE_PERM") \
            or "readonly" in text:
        return (f"{path}: permission denied; the service user needs write access to the file"
                " and its directory")
    if name == "SQLITE_FULL" or "disk is full" in text or getattr(exc, "errno", 0) == 28:
        return f"{path}: disk full; free space on the storage device or lower storage limits"
    if name == "SQLITE_CANTOPEN" or "unable to open" in text:
        return (f"{path}: cannot open the database file; check the directory exists and is"
                " writable")
    if name == "SQLITE_NOTADB" or "not a database" in text:
        return f"{path}: the file is not an SQLite database (wrong storage.path?)"
    if name == "SQLITE_CORRUPT" or "malformed" in text:
        return f"{path}: the database is corrupt; move it aside and restart (events are lost)"
    if name == "SQLITE_BUSY" or "locked" in text:
        return (f"{path}: the database is locked by another process; only one gateway may use"
                " a database file")
    return f"{path}: {text or type(exc).__name__}"


def _create_private(path: str) -> None:
    """Create the DB file (and parent dirs) with mode 0600 before SQLite opens it.

    SQLite creates -wal/-shm with the main file's permissions, so they inherit 0600.
    """
    if path == ":memory:":
        return
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _tighten(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


class Outbox:
    """The durable FIFO of outbound messages; see the module docstring for its invariants."""

    def __init__(self, conn: aiosqlite.Connection, path: str, *, max_rows: int,
                 max_age_s: float, depth: int, last_seq: int, dropped_total: int) -> None:
        self._conn = conn
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._depth = depth
        self._last_seq = last_seq
        self.dropped = 0
        self.dropped_total = dropped_total
        self.duplicates = 0  # appended messages whose id was already stored (not stored again)
        self.wakeup = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._lock = asyncio.Lock()
        self._closed = False
        if depth:
            self.wakeup.set()

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str, *, max_rows: int, max_age_s: float) -> Outbox:
        """Open (creating and migrating if needed) the outbox at `path`."""
        if max_rows < 1 or max_age_s <= 0:
            raise ValueError("max_rows must be >= 1 and max_age_s > 0")
        conn: aiosqlite.Connection | None = None
        try:
            _create_private(path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
            conn = await aiosqlite.connect(path, isolation_level=None)
            for pragma in _PRAGMAS:
                await conn.execute(pragma)
            await _migrate(conn, path)
            _tighten(path)
            depth = await _scalar(conn, "SELECT count(*) FROM outbox")
            last_seq = await _scalar(conn, "SELECT value FROM meta WHERE key='last_seq'")
            dropped = await _scalar(conn, "SELECT value FROM meta WHERE key='dropped_total'")
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                await conn.close()
            raise StoreError(_describe(exc, path)) from exc
        return cls(conn, path, max_rows=max_rows, max_age_s=max_age_s, depth=depth,
                   last_seq=last_seq, dropped_total=dropped)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            try:
                await self._conn.close()
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(_describe(exc, self.path)) from exc

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def connection(self) -> aiosqlite.Connection:
        """The single writer connection; write only inside `transaction()`."""
        return self._conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE .. COMMIT (ROLLBACK on error) under the writer lock."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
                await self._conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(_describe(exc, self.path)) from exc

    # -- the outbox -----------------------------------------------------------------------
    async def append(self, messages: Sequence[OutboundMessage]) -> None:
        """Commit a batch in one transaction, then enforce the bounds; wakes the publisher.

        Shielded: once started, a batch is committed (and counted) even if the caller is
        cancelled meanwhile, so the in-memory counters never drift from the file.
        """
        if messages:
            await asyncio.shield(self._append(messages))

    async def _append(self, messages: Sequence[OutboundMessage]) -> None:
        now = time.time()
        rows = [(m.id, m.seq, m.topic, m.payload, m.qos, int(m.retain), m.created, now)
                for m in messages]
        top = max(m.seq for m in messages)
        async with self.transaction() as conn:
            cur = await conn.executemany(_INSERT, rows)
            stored = cur.rowcount if cur.rowcount >= 0 else len(rows)
            if top > self._last_seq:
                await conn.execute("UPDATE meta SET value=? WHERE key='last_seq'", (top,))
            dropped = await self._enforce_bounds(conn, self._depth + stored, now)
        self.duplicates += len(rows) - stored
        self._depth += stored - dropped
        self._last_seq = max(self._last_seq, top)
        self.dropped += dropped
        self.dropped_total += dropped
        self.wakeup.set()
        for listener in self._listeners:
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (in the loop) after every committed append: the publisher's wake-up
        without a second waiter on `wakeup`."""
        self._listeners.append(listener)

    async def _enforce_bounds(self, conn: aiosqlite.Connection, depth: int, now: float) -> int:
        """Drop the oldest rows beyond max_rows or older than max_age_s; returns the count."""
        dropped = 0
        if depth > self.max_rows:
            cur = await conn.execute(
                "DELETE FROM outbox WHERE n IN (SELECT n FROM outbox ORDER BY n LIMIT ?)",
                (depth - self.max_rows,))
            dropped += cur.rowcount
        # The oldest row by key is (clock jumps aside) the oldest stored: O(1) check first, so
        # the common case costs one indexed lookup and no scan.
        cutoff = now - self.max_age_s
        oldest = await _scalar(conn, "SELECT stored_at FROM outbox ORDER BY n LIMIT 1", -1.0)
        if 0 <= oldest < cutoff:
            cur = await conn.execute(
                "DELETE FROM outbox WHERE n < COALESCE("
                "(SELECT n FROM outbox WHERE stored_at >= ? ORDER BY n LIMIT 1),"
                " (SELECT max(n) + 1 FROM outbox))", (cutoff,))
            dropped += cur.rowcount
        if dropped:
            await conn.execute("UPDATE meta SET value = value + ? WHERE key='dropped_total'",
                               (dropped,))
        return dropped

    async def oldest(self, limit: int, *, after: int = 0) -> list[StoredMessage]:
        """Up to `limit` rows with rowid > `after`, oldest first."""
        try:
            # Under the lock: never read another task's uncommitted batch.
            async with self._lock, self._conn.execute(
                    "SELECT n, id, seq, topic, payload, qos, retain, created FROM outbox"
                    " WHERE n > ? ORDER BY n LIMIT ?", (after, limit)) as cur:
                rows = await cur.fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_describe(exc, self.path)) from exc
        return [StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7])
                for r in rows]

    async def delete(self, rowids: Sequence[int]) -> None:
        """Delete delivered rows in one transaction; consecutive keys become one range."""
        if rowids:
            await asyncio.shield(self._delete(rowids))

    async def _delete(self, rowids: Sequence[int]) -> None:
        ranges = _ranges(rowids)
        async with self.transaction() as conn:
            cur = await conn.executemany("DELETE FROM outbox WHERE n BETWEEN ? AND ?", ranges)
            removed = cur.rowcount
        self._depth = max(0, self._depth - max(removed, 0))

    async def depth(self) -> int:
        """Rows waiting (kept in memory: count(*) is a full scan in SQLite)."""
        return self._depth

    async def last_seq(self) -> int:
        return self._last_seq

    @property
    def size(self) -> int:
        """Synchronous twin of `depth()` for stats snapshots."""
        return self._depth


def _ranges(rowids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted keys -> inclusive (lo, hi) runs; acks arrive nearly in order, so runs are long."""
    keys = sorted(rowids)
    out: list[tuple[int, int]] = []
    lo = hi = keys[0]
    for k in keys[1:]:
        if k == hi + 1:
            hi = k
        elif k != hi:
            out.append((lo, hi))
            lo = hi = k
    out.append((lo, hi))
    return out


async def _scalar(conn: aiosqlite.Connection, sql: str, default: Any = 0) -> Any:
    async with conn.execute(sql) as cur:
        row = await cur.fetchone()
    return default if row is None or row[0] is None else row[0]


async def _migrate(conn: aiosqlite.Connection, path: str) -> None:
    version = await _scalar(conn, "PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: created by a newer presence-gateway (schema {version} >"
                         f" {SCHEMA_VERSION}); upgrade the gateway or use another file")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in _MIGRATIONS[target]:
                await conn.execute(sql)
            await conn.execute(f"PRAGMA user_version={target}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
