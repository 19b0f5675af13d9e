"""Shell: the durable SQLite outbox (aiosqlite), and the one writer connection to the DB file.

Invariants:
- Every message is committed to SQLite before anyone may publish it; `append` writes a whole
  batch in ONE transaction (one fsync with synchronous=FULL), so a power cut loses at most the
  batch that was being committed, never part of one.
- Rows are read oldest first by an AUTOINCREMENT key (`n`), which never goes backwards even
  after the table empties, so a reader's cursor (`after=`) can never skip a newer row. The
  reads and figures are the `OutboxReads` mixin (outbox_reads.py).
- A row stops waiting only by `delete` (after the broker's PUBACK; with a resend window the
  row is kept, marked delivered, until `keep_delivered_s` or `keep_delivered_bytes` passes) or
  by the bounds: more than `max_rows` waiting rows or stored longer than `max_age_s` (wall
  clock at append time) -> the oldest are dropped and counted in `dropped` (since open).
- The disk budget (outbox_budget.py) sheds delivered rows, then anonymous waiting rows, then
  any waiting rows, counted in `shed`; a full device never ends the gateway: `append` sheds
  and retries once, then raises `DiskFull` (the writer keeps the batch and retries), and a
  delivery mark that cannot be written is kept in memory and retried.
- `requeue` moves delivered rows back to the queue with their ORIGINAL id, seq and bytes (a
  new key `n`, so a reader's cursor sees them); one row per event id throughout.
- `last_seq` (highest seq ever appended) and `dropped_total` (bounds and budget drops) live in
  the `meta` table, so they survive deletion of every row and restarts.
- ONE writer connection per file. Other shells (identity registry, offers state, retention
  purge) share the file through their own tables via `outbox.connection`, and wrap every write
  in `async with outbox.transaction():` so their statements never interleave with an open
  outbox transaction. `PRAGMA user_version` belongs to this module; other shells keep their
  schema version in `meta` under their own key (e.g. 'schema.identity') or use
  CREATE TABLE IF NOT EXISTS.
- The DB file and its -wal/-shm companions are created with mode 0600 (pseudonymous data is
  still personal data).
- sqlite3/OS errors leave this module only as StoreError (DiskFull for a full device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType

import aiosqlite

from presence_gateway.adapters import outbox_budget as budget_sql
from presence_gateway.adapters import outbox_delivered as delivered
from presence_gateway.adapters.outbox_budget import ROW_OVERHEAD, Budget, Shed
from presence_gateway.adapters.outbox_delivered import Requeued
from presence_gateway.adapters.outbox_reads import OutboxReads
from presence_gateway.adapters.outbox_reads import StoredMessage as StoredMessage
from presence_gateway.adapters.outbox_schema import MIGRATIONS as _MIGRATIONS  # noqa: F401
from presence_gateway.adapters.outbox_schema import (
    PRAGMAS,
    create_private,
    migrate,
    scalar,
    store_error,
    tighten,
)
from presence_gateway.core.model import OutboundMessage
from presence_gateway.errors import DiskFull

log = logging.getLogger("presence_gateway.adapters.outbox")
NO_BUDGET = Budget()  # no byte limit, delete on PUBACK (tests and tools)
SHED_LOG_S = 60.0  # at most one shedding summary a minute

_INSERT, _WAITING = delivered.INSERT, delivered.WAITING


class Outbox(OutboxReads):
    """The durable FIFO of outbound messages; see the module docstring for its invariants."""

    def __init__(self, conn: aiosqlite.Connection, path: str, *, max_rows: int,
                 max_age_s: float, budget: Budget, depth: int, last_seq: int,
                 dropped_total: int, delivered_bytes: int) -> None:
        self._conn = conn
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.budget = budget
        self._depth = depth
        self._last_seq = last_seq
        self.dropped = 0
        self.dropped_total = dropped_total
        self.duplicates = 0  # appended messages whose id was already stored (not stored again)
        self.shed = Shed()   # removed for the disk budget since open
        self.delivered_bytes = delivered_bytes
        self.disk_full = False
        self.compactions = 0
        self._unmarked: list[int] = []  # PUBACKed rows whose mark failed on a full disk
        self._shed_logged = Shed()
        self._shed_log_at = float("-inf")
        self.wakeup = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self._lock = asyncio.Lock()
        self._closed = False
        if depth:
            self.wakeup.set()

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str, *, max_rows: int, max_age_s: float,
                   budget: Budget = NO_BUDGET) -> Outbox:
        """Open (creating and migrating if needed) the outbox at `path`."""
        if max_rows < 1 or max_age_s <= 0:
            raise ValueError("max_rows must be >= 1 and max_age_s > 0")
        conn: aiosqlite.Connection | None = None
        try:
            create_private(path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
            conn = await aiosqlite.connect(path, isolation_level=None)
            for pragma in PRAGMAS:
                await conn.execute(pragma)
            await migrate(conn, path)
            tighten(path)
            depth = await scalar(conn, f"SELECT count(*) FROM outbox WHERE {_WAITING}")
            last_seq = await scalar(conn, "SELECT value FROM meta WHERE key='last_seq'")
            dropped = await scalar(conn, "SELECT value FROM meta WHERE key='dropped_total'")
            kept = await budget_sql.delivered_bytes(conn)
        except BaseException as exc:
            # Any refusal (a newer schema is a StoreError) closes the connection: left open,
            # its worker thread runs on until the collector finds it, maybe after the loop
            # has closed ("Event loop is closed" in that thread).
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, OSError):
                    await conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise store_error(exc, path) from exc
            raise
        return cls(conn, path, max_rows=max_rows, max_age_s=max_age_s, budget=budget,
                   depth=depth, last_seq=last_seq, dropped_total=dropped, delivered_bytes=kept)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            try:
                await self._conn.close()
            except (sqlite3.Error, OSError) as exc:
                raise store_error(exc, self.path) from exc

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
                await self._begin()
                try:
                    yield self._conn
                    await self._conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (SQLITE_FULL at COMMIT does): a
                    # second ROLLBACK would hide the real error behind "no transaction".
                    if self._conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            await self._conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise store_error(exc, self.path) from exc

    async def _begin(self) -> None:
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            if not self._conn.in_transaction:
                raise
            # An orphan: a caller cancelled while its BEGIN waited in aiosqlite's queue, and the
            # worker thread ran the BEGIN after it had gone (a cancelled await does not stop
            # it). Nothing was written in it (its caller never got past BEGIN): close it.
            await self._conn.execute("ROLLBACK")
            await self._conn.execute("BEGIN IMMEDIATE")

    # -- the outbox -----------------------------------------------------------------------
    async def append(self, messages: Sequence[OutboundMessage]) -> None:
        """Commit a batch in one transaction, then enforce the bounds; wakes the publisher.

        Shielded: once started, a batch is committed (and counted) even if the caller is
        cancelled meanwhile, so the in-memory counters never drift from the file. Raises
        DiskFull when the device is full even after shedding: nothing of the batch is stored.
        """
        if messages:
            await asyncio.shield(self._append(messages))

    async def _append(self, messages: Sequence[OutboundMessage]) -> None:
        try:
            await self._commit(messages)
        except DiskFull:
            if not self.disk_full:
                log.warning("%s: disk full; dropping delivered and the oldest anonymous events"
                            " to make room (capture goes on)", self.path)
            self.disk_full = True
            need = sum(len(m.payload) + len(m.topic) for m in messages) * 2 + (1 << 20)
            await self._make_room(need)
            await self._commit(messages)  # still full: DiskFull again, the caller keeps them
        if self.disk_full:
            self.disk_full = False
            log.warning("%s: storage writable again", self.path)
        await self._retry_marks()
        self.wakeup.set()
        for listener in self._listeners:
            listener()

    async def _commit(self, messages: Sequence[OutboundMessage]) -> None:
        now = time.time()
        rows = [(m.id, m.seq, m.topic, m.payload, m.qos, int(m.retain), m.created, now,
                 int(m.anonymous)) for m in messages]
        top = max(m.seq for m in messages)
        shed = Shed()
        async with self.transaction() as conn:
            if self.budget.active:
                # Before the insert: the batch must fit without growing the file past the
                # budget, and rows freed here are reused by it (the file does not grow).
                usage = await budget_sql.measure(conn, self.path)
                incoming = sum(len(m.payload) + len(m.topic) + ROW_OVERHEAD for m in messages)
                over = budget_sql.excess(self.budget, usage, incoming)
                if over > 0:
                    shed = await budget_sql.shed(conn, over)
            cur = await conn.executemany(_INSERT, rows)
            stored = cur.rowcount if cur.rowcount >= 0 else len(rows)
            if top > self._last_seq:
                await conn.execute("UPDATE meta SET value=? WHERE key='last_seq'", (top,))
            dropped = await self._enforce_bounds(conn, self._depth + stored, now)
            if dropped or shed.waiting:
                await conn.execute("UPDATE meta SET value = value + ? WHERE key='dropped_total'",
                                   (dropped + shed.waiting,))
        self.duplicates += len(rows) - stored
        self._depth += stored - dropped - shed.waiting
        self._last_seq = max(self._last_seq, top)
        self.dropped += dropped
        self.dropped_total += dropped + shed.waiting
        self._count_shed(shed)

    async def _make_room(self, need: int) -> None:
        """On a full device: shed about `need` bytes in one small transaction (a delete writes
        about its size to the WAL, which still has the space it had); a failure here is
        DiskFull for the caller."""
        shed = Shed()
        async with self.transaction() as conn:
            shed = await budget_sql.shed(conn, need)
            if shed.waiting:
                await conn.execute("UPDATE meta SET value = value + ? WHERE key='dropped_total'",
                                   (shed.waiting,))
        self._depth -= shed.waiting
        self.dropped_total += shed.waiting
        self._count_shed(shed)

    def _count_shed(self, shed: Shed) -> None:
        if not (shed.delivered or shed.waiting):
            return
        self.shed.add(shed)
        self.delivered_bytes = max(0, self.delivered_bytes - shed.delivered_bytes)
        self._shed_logged.add(shed)
        now = time.monotonic()
        if now - self._shed_log_at >= SHED_LOG_S:
            s, self._shed_logged = self._shed_logged, Shed()
            self._shed_log_at = now
            log.warning("%s: over the disk budget (storage.max_bytes %d, min_free_bytes %d):"
                        " dropped %d delivered (kept for resend), %d anonymous and %d"
                        " identified waiting events since the last report", self.path,
                        self.budget.max_bytes, self.budget.min_free_bytes, s.delivered,
                        s.anonymous, s.identified)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (in the loop) after every committed append: the publisher's wake-up
        without a second waiter on `wakeup`."""
        self._listeners.append(listener)

    async def _enforce_bounds(self, conn: aiosqlite.Connection, depth: int, now: float) -> int:
        """Drop the oldest waiting rows beyond max_rows or older than max_age_s; the count."""
        dropped = 0
        if depth > self.max_rows:
            cur = await conn.execute(
                f"DELETE FROM outbox WHERE n IN (SELECT n FROM outbox WHERE {_WAITING}"
                " ORDER BY n LIMIT ?)", (depth - self.max_rows,))
            dropped += cur.rowcount
        # The oldest row by key is (clock jumps aside) the oldest stored: one check first, so
        # the common case costs no delete.
        cutoff = now - self.max_age_s
        oldest = await scalar(conn, f"SELECT stored_at FROM outbox WHERE {_WAITING}"
                                    " ORDER BY n LIMIT 1", -1.0)
        if 0 <= oldest < cutoff:
            cur = await conn.execute(
                f"DELETE FROM outbox WHERE {_WAITING} AND n < COALESCE("
                f"(SELECT n FROM outbox WHERE {_WAITING} AND stored_at >= ? ORDER BY n LIMIT 1),"
                " (SELECT max(n) + 1 FROM outbox))", (cutoff,))
            dropped += cur.rowcount
        return dropped

    async def delete(self, rowids: Sequence[int]) -> None:
        """Rows the broker acknowledged stop waiting, in one transaction: deleted, or marked
        delivered when a resend window is configured. Never raises DiskFull: the keys are
        kept and written with the next append or delete."""
        if rowids:
            await asyncio.shield(self._delete(rowids))

    async def _delete(self, rowids: Sequence[int]) -> None:
        keys, self._unmarked = [*self._unmarked, *rowids], []
        ranges = delivered.ranges(keys)
        keep = self.budget.keep_delivered_s > 0
        removed = marked = pruned = 0
        try:
            async with self.transaction() as conn:
                if keep:
                    removed, marked = await delivered.mark(conn, ranges, time.time())
                    cap = self.budget.keep_delivered_bytes
                    if cap and self.delivered_bytes + marked > cap:
                        _, pruned = await budget_sql.prune_delivered(
                            conn, before=0.0, over_bytes=self.delivered_bytes + marked - cap)
                else:
                    cur = await conn.executemany("DELETE FROM outbox WHERE n BETWEEN ? AND ?",
                                                 ranges)
                    removed = max(cur.rowcount, 0)
        except DiskFull:
            # The rows stay waiting in the file and are retried with the next write. Merge,
            # not assign: another delete (maintenance retrying older acks) may have failed
            # while this one waited for the lock, and its keys must not be forgotten.
            self._unmarked = [*keys, *self._unmarked]
            self.disk_full = True
            return
        self._depth = max(0, self._depth - removed)
        self.delivered_bytes = max(0, self.delivered_bytes + marked - pruned)

    async def _retry_marks(self) -> None:
        if self._unmarked:
            await self._delete([])

    async def tidy(self, now: float | None = None) -> None:
        """Maintenance: forget delivered rows past the resend window; compact the file when
        the queue is empty and the live data small. DiskFull is left for the next call."""
        now = time.time() if now is None else now
        with contextlib.suppress(DiskFull):
            await self._retry_marks()
            if self.budget.keep_delivered_s > 0 or self.delivered_bytes:
                async with self.transaction() as conn:
                    _, freed = await budget_sql.prune_delivered(
                        conn, before=now - self.budget.keep_delivered_s, over_bytes=0)
                self.delivered_bytes = max(0, self.delivered_bytes - freed)
            if self._depth == 0:
                await self.compact()

    async def compact(self, *, force: bool = False) -> bool:
        """VACUUM when worth it (outbox_budget.compactable) or `force`; True if it ran."""
        async with self._lock:
            try:
                usage = await budget_sql.compactable(self._conn, self.path)
                if usage is None and not force:
                    return False
                t0 = time.monotonic()
                await budget_sql.vacuum(self._conn)
                after = await budget_sql.measure(self._conn, self.path)
            except (sqlite3.Error, OSError) as exc:
                raise store_error(exc, self.path) from exc
        self.compactions += 1
        if usage is not None:
            log.info("%s: compacted %.1f MB -> %.1f MB in %.2f s", self.path, usage.size / 1e6,
                     after.size / 1e6, time.monotonic() - t0)
        return True

    # -- resend ---------------------------------------------------------------------------
    async def requeue(self, first: int, last: int) -> Requeued:
        """Put the delivered rows with seq in [first, last] back in the queue, unchanged."""
        async with self.transaction() as conn:
            done = await delivered.requeue(conn, first, last, time.time())
        self._depth += done.requeued
        self.delivered_bytes = max(0, self.delivered_bytes - done.freed)
        if done.requeued:
            self.wakeup.set()
            for listener in self._listeners:
                listener()
        return done
