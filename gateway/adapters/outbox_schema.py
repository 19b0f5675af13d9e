"""Shell: the outbox file's schema, pragmas, migrations and error translation.

Invariants:
- `PRAGMA user_version` is the outbox's schema version; each migration runs in its own
  transaction together with the version bump, so a file is never half migrated.
- sqlite3/OS errors become `StoreError` with an installer-actionable sentence; a full device
  (SQLITE_FULL, ENOSPC) becomes `DiskFull`, which callers handle instead of stopping.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import aiosqlite

from presence_gateway.errors import DiskFull, StoreError

SCHEMA_VERSION = 4

# Migrations by target user_version; each runs in its own transaction with the version bump.
MIGRATIONS: dict[int, tuple[str, ...]] = {
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
    # Disk budget and resend: `anon` marks what may be dropped first; a delivered row is kept
    # (delivered_at set) for the resend window instead of being deleted on PUBACK; `seq` is
    # indexed for `events.resend` ranges. Rows of older files count as not anonymous.
    3: (
        "ALTER TABLE outbox ADD COLUMN anon INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN delivered_at REAL",
        "CREATE INDEX outbox_seq ON outbox (seq)",
        "CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL",
    ),
    # The waiting rows by key: with a day of delivered rows at the head of the table, finding
    # the oldest waiting row (every batch: the age bound; every read of the publisher after a
    # reconnect) scanned them all, 153 ms for 80,000 rows; 0.02 ms with this index.
    4: (
        "CREATE INDEX outbox_waiting ON outbox (n) WHERE delivered_at IS NULL",
    ),
}

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: each commit fsyncs the WAL; commits are batched, so this costs one fsync per batch.
    "PRAGMA synchronous=FULL",
    # Checkpoint every ~4 MB of WAL and truncate it back to 8 MB at most: bounded SD-card usage.
    # The WAL file is reused from its start after each checkpoint, so small deletes still find
    # room in it when the device is full (what shedding on a full disk relies on).
    "PRAGMA wal_autocheckpoint=1000",
    "PRAGMA journal_size_limit=8388608",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)


def is_full(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return (name == "SQLITE_FULL" or "disk is full" in str(exc)
            or getattr(exc, "errno", 0) == errno.ENOSPC)


def store_error(exc: BaseException, path: str) -> StoreError:
    """The StoreError (DiskFull for a full device) to raise for a sqlite3/OS error."""
    text = describe(exc, path)
    return DiskFull(text) if is_full(exc) else StoreError(text)


def describe(exc: BaseException, path: str) -> str:
    """An installer-actionable sentence for a sqlite3/OS error on `path`."""
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if isinstance(exc, PermissionError) or name in ("SQLITE_READONLY", "SQLITE_PERM") \
            or "readonly" in text:
        return (f"{path}: permission denied; the service user needs write access to the file"
                " and its directory")
    if is_full(exc):
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


def create_private(path: str) -> None:
    """Create the DB file (and parent dirs) with mode 0600 before SQLite opens it.

    SQLite creates -wal/-shm with the main file's permissions, so they inherit 0600.
    """
    if path == ":memory:":
        return
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def tighten(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


async def scalar(conn: aiosqlite.Connection, sql: str, default: Any = 0,
                 params: tuple[Any, ...] = ()) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return default if row is None or row[0] is None else row[0]


async def migrate(conn: aiosqlite.Connection, path: str) -> None:
    version = await scalar(conn, "PRAGMA user_version")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: created by a newer presence-gateway (schema {version} >"
                         f" {SCHEMA_VERSION}); upgrade the gateway or use another file")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in MIGRATIONS[target]:
                await conn.execute(sql)
            await conn.execute(f"PRAGMA user_version={target}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
