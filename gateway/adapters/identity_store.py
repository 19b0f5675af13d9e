"""Shell: the identity registry in SQLite (aiosqlite): entries, opt-out list, visit history.

Tables (CREATE IF NOT EXISTS, prefixed `identity_`, in the same file as the outbox):
  identity_entries  entry_id, customer_id, kind, material (hash or secret), consent, segments,
                    expires, source ('import' | 'sync'), updated
  identity_opt_out  hash                       (keyed stable hashes of opted-out addresses)
  identity_visits   visit_id, customer_id, ts  (linked visits with `offers` consent)
  identity_meta     key, value                 ('sync_version', 'key_check')

Invariants:
- Secrets (IRKs, EID keys, app-token secrets) live only in `identity_entries.material` of this
  file, which is created and kept at mode 0600 (-wal/-shm too). `list_entries` never returns
  material. Raw beacon ids and MACs are never stored (the core hashes them first).
- `key_check` is a keyed hash of a constant under the privacy secret: material hashed under one
  secret is never matched under another; `check_key` refuses with an actionable message.
- Every change is one transaction; a sync change is applied whole (entries, opt-out, version)
  or not at all.
- `forget(customer)` erases every stored trace: entries, visit history, rows of any table with a
  `customer_id` column (e.g. `offer_ledger`), and outbox rows whose payload names the customer
  (not yet published; the SQL is adapters/identity_erase.py). Deletion runs with
  `secure_delete` on, then the WAL is truncated and, on a connection of its own, the file is
  vacuumed, so no free page keeps a copy.
- Two modes: `Registry.open(path)` (own connection: CLI, tests) or `Registry.attach(outbox)`
  (the service: shares the outbox's single writer connection and its `transaction()`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Protocol

import aiosqlite

from presence_gateway.adapters.identity_erase import Erased as Erased
from presence_gateway.adapters.identity_erase import erase, sum_erased
from presence_gateway.core.identity.index import Entry, EntryKind, Hasher
from presence_gateway.core.identity.link import VisitRecord
from presence_gateway.core.identity.sync import SyncChange
from presence_gateway.errors import StoreError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS identity_entries (
           entry_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, kind TEXT NOT NULL,
           material TEXT NOT NULL, consent TEXT NOT NULL, segments TEXT NOT NULL,
           expires REAL, source TEXT NOT NULL, updated REAL NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS identity_entries_material"
    " ON identity_entries (kind, material)",
    "CREATE INDEX IF NOT EXISTS identity_entries_customer ON identity_entries (customer_id)",
    "CREATE TABLE IF NOT EXISTS identity_opt_out (hash TEXT PRIMARY KEY) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS identity_visits (
           visit_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, ts REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS identity_visits_customer ON identity_visits (customer_id, ts)",
    "CREATE INDEX IF NOT EXISTS identity_visits_ts ON identity_visits (ts)",
    """CREATE TABLE IF NOT EXISTS identity_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
       WITHOUT ROWID""",
)
_UPSERT = ("INSERT OR REPLACE INTO identity_entries (entry_id, customer_id, kind, material,"
           " consent, segments, expires, source, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_KEY_CHECK = b"presence-gateway/registry-key-check"
_DAY = 86400.0


class OutboxLike(Protocol):
    """What `attach` needs from gateway.store.Outbox."""

    path: str

    @property
    def connection(self) -> aiosqlite.Connection: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]: ...


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What `identities list` shows: everything but the material."""

    entry_id: str
    customer_id: str
    kind: str
    consent: tuple[str, ...]
    segments: dict[str, str]
    expires: float | None
    source: str
    updated: float


@dataclass(frozen=True, slots=True)
class RegistryState:
    """What the service loads at start (and after a sync) into the core."""

    entries: list[Entry]
    opt_out: frozenset[str]
    visits: list[VisitRecord]
    version: int


@dataclass(frozen=True, slots=True)
class Purged:
    visits: int
    expired_entries: int


def _private(path: str) -> None:
    if path == ":memory:":
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def _tighten(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path + suffix, 0o600)


def key_check(hasher: Hasher) -> str:
    return hasher(_KEY_CHECK, "registry")


class Registry:
    def __init__(self, conn: aiosqlite.Connection, path: str,
                 txn: Callable[[], contextlib.AbstractAsyncContextManager[aiosqlite.Connection]],
                 *, own: bool) -> None:
        self._conn = conn
        self.path = path
        self._txn = txn
        self._own = own

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str) -> Registry:
        """A connection of its own (CLI, tests); creates the file 0600 and the tables."""
        try:
            _private(path)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open the registry: {exc}") from exc
        reg = cls(conn, path, lambda: _own_txn(conn, path), own=True)
        try:
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                           "PRAGMA busy_timeout=5000", "PRAGMA secure_delete=ON"):
                await conn.execute(pragma)
            await reg._create()
        except BaseException:
            await conn.close()
            raise
        return reg

    @classmethod
    async def attach(cls, outbox: OutboxLike) -> Registry:
        """Share the outbox's writer connection (the service: one writer per file)."""
        reg = cls(outbox.connection, outbox.path, outbox.transaction, own=False)
        await reg._create()
        return reg

    async def _create(self) -> None:
        async with self._txn() as conn:
            for sql in _SCHEMA:
                await conn.execute(sql)
        _tighten(self.path)

    async def close(self) -> None:
        if self._own:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.close()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- reads -------------------------------------------------------------------------------
    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row | Any]:
        try:
            async with self._conn.execute(sql, args) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def _meta(self, key: str) -> str | None:
        rows = await self._rows("SELECT value FROM identity_meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    async def data_version(self) -> int:
        """Changes when ANOTHER connection commits (e.g. the CLI while the service runs)."""
        return int((await self._rows("PRAGMA data_version"))[0][0])

    async def sync_version(self) -> int:
        return int(await self._meta("sync_version") or 0)

    async def entries(self) -> list[Entry]:
        """Every entry WITH its material: for IdentityIndex only, never for display."""
        rows = await self._rows("SELECT entry_id, customer_id, kind, material, consent,"
                                " segments, expires FROM identity_entries ORDER BY entry_id")
        return [Entry(r[0], r[1], EntryKind(r[2]), r[3], frozenset(r[4].split()),
                      MappingProxyType(json.loads(r[5])), r[6]) for r in rows]

    async def list_entries(self) -> list[EntryInfo]:
        rows = await self._rows("SELECT entry_id, customer_id, kind, consent, segments,"
                                " expires, source, updated FROM identity_entries"
                                " ORDER BY customer_id, entry_id")
        return [EntryInfo(r[0], r[1], r[2], tuple(r[3].split()), json.loads(r[4]), r[5], r[6],
                          r[7]) for r in rows]

    async def opt_out(self) -> frozenset[str]:
        return frozenset(r[0] for r in await self._rows("SELECT hash FROM identity_opt_out"))

    async def visits(self) -> list[VisitRecord]:
        rows = await self._rows("SELECT customer_id, visit_id, ts FROM identity_visits"
                                " ORDER BY ts")
        return [VisitRecord(r[0], r[1], r[2]) for r in rows]

    async def load(self, hasher: Hasher) -> RegistryState:
        """Everything the core needs; refuses material hashed under another secret."""
        await self.check_key(hasher)
        return RegistryState(await self.entries(), await self.opt_out(), await self.visits(),
                             await self.sync_version())

    async def check_key(self, hasher: Hasher) -> None:
        """Refuse a registry whose hashes were made under another privacy secret."""
        stored = await self._meta("key_check")
        if stored is not None and stored != key_check(hasher):
            raise StoreError(
                f"{self.path}: the identity registry was written under a different"
                " privacy.secret; restore that secret, or `identities forget`/re-import every"
                " entry under the new one")

    # -- writes ------------------------------------------------------------------------------
    async def import_entries(self, entries: Iterable[Entry], hasher: Hasher, now: float) -> int:
        """Upsert entries (source 'import'); same material under a new id replaces the old."""
        await self.check_key(hasher)
        rows = list(entries)
        async with self._txn() as conn:
            await _set_meta(conn, "key_check", key_check(hasher))
            for e in rows:
                await _upsert(conn, e, "import", now)
        return len(rows)

    async def remove(self, entry_id: str) -> bool:
        async with self._secure(), self._txn() as conn:
            cur = await conn.execute("DELETE FROM identity_entries WHERE entry_id=?",
                                     (entry_id,))
            n = cur.rowcount
        await self._compact()
        return n > 0

    async def add_visits(self, records: Sequence[VisitRecord]) -> None:
        if records:
            async with self._txn() as conn:
                await conn.executemany(
                    "INSERT OR IGNORE INTO identity_visits (visit_id, customer_id, ts)"
                    " VALUES (?, ?, ?)", [(r.visit_id, r.customer_id, r.ts) for r in records])

    async def apply_sync(self, change: SyncChange, hasher: Hasher, now: float) -> Erased:
        """Apply a validated change whole; deleted customers are erased like `forget`."""
        await self.check_key(hasher)
        erased = Erased(0, 0, {})
        async with self._secure(), self._txn() as conn:
            if change.replace:
                await conn.execute("DELETE FROM identity_entries WHERE source='sync'")
                await conn.execute("DELETE FROM identity_opt_out")
            for customer in change.delete_customers:
                erased = sum_erased(erased, await erase(conn, customer))
            await conn.executemany("DELETE FROM identity_entries WHERE entry_id=?",
                                   [(i,) for i in change.delete_entries])
            for e in change.upsert:
                await _upsert(conn, e, "sync", now)
            await conn.executemany("INSERT OR IGNORE INTO identity_opt_out (hash) VALUES (?)",
                                   [(h,) for h in sorted(change.opt_out_add)])
            await conn.executemany("DELETE FROM identity_opt_out WHERE hash=?",
                                   [(h,) for h in sorted(change.opt_out_remove)])
            await _set_meta(conn, "sync_version", str(change.version))
            await _set_meta(conn, "key_check", key_check(hasher))
        if change.delete_customers:
            await self._compact()
        return erased

    async def forget(self, customer_id: str) -> Erased:
        """Right to erasure: every stored trace of the customer, in one transaction."""
        async with self._secure(), self._txn() as conn:
            erased = await erase(conn, customer_id)
        await self._compact()
        return erased

    async def purge(self, now: float, retention_days: float) -> Purged:
        """Drop visit history older than the retention and entries past their expiry."""
        async with self._secure(), self._txn() as conn:
            cur = await conn.execute("DELETE FROM identity_visits WHERE ts < ?",
                                     (now - retention_days * _DAY,))
            visits = cur.rowcount
            cur = await conn.execute("DELETE FROM identity_entries WHERE expires IS NOT NULL"
                                     " AND expires <= ?", (now,))
            expired = cur.rowcount
        return Purged(visits, expired)

    # -- erasure helpers ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _secure(self) -> AsyncIterator[None]:
        """secure_delete on for this change: deleted content is overwritten, not just freed."""
        if self._own:
            yield
            return
        await self._conn.execute("PRAGMA secure_delete=ON")
        try:
            yield
        finally:
            await self._conn.execute("PRAGMA secure_delete=OFF")

    async def _compact(self) -> None:
        """Best effort: fold the WAL back (its old page images) and, on our own connection,
        vacuum so no free page keeps a copy. A busy file (the service running) just waits for
        its next checkpoint; secure_delete already zeroed the rows."""
        with contextlib.suppress(sqlite3.Error):
            if self._own:
                await self._conn.execute("VACUUM")
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def _own_txn_impl(conn: aiosqlite.Connection,
                        path: str) -> AsyncIterator[aiosqlite.Connection]:
    try:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from exc


_own_txn = contextlib.asynccontextmanager(_own_txn_impl)


async def _set_meta(conn: aiosqlite.Connection, key: str, value: str) -> None:
    await conn.execute("INSERT OR REPLACE INTO identity_meta (key, value) VALUES (?, ?)",
                       (key, value))


async def _upsert(conn: aiosqlite.Connection, e: Entry, source: str, now: float) -> None:
    await conn.execute("DELETE FROM identity_entries WHERE kind=? AND material=? AND entry_id<>?",
                       (e.kind.value, e.material, e.entry_id))
    await conn.execute(_UPSERT, (e.entry_id, e.customer_id, e.kind.value, e.material,
                                 " ".join(sorted(e.consent)), json.dumps(dict(e.segments)),
                                 e.expires, source, now))
