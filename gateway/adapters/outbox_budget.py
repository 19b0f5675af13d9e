"""Shell: the outbox's disk budget, shedding order and compaction (SQL on the writer connection).

Invariants:
- The budget is in bytes of the database's live pages ((page_count - freelist_count) x
  page_size, which includes the identity and offers tables): it may not pass
  `max_bytes`, nor grow the file into the last `min_free_bytes` of the device. The WAL
  (at most ~8 MB, see outbox_schema.PRAGMAS) comes on top.
- Shedding order, each step only while still over: delivered rows kept for `events.resend`
  (oldest first), then waiting *anonymous* rows (no customer, not retained state; oldest
  first), then, as the last resort that keeps capture running, the oldest waiting rows of any
  kind. The check runs before a batch is inserted, counting the batch: the rows freed are
  reused by it, so the file does not grow into the floor (checkpoints never need to grow it
  on a full device, which would jam the WAL).
- A shedding pass deletes about what is needed (plus 1 % hysteresis), choosing rows
  `SHED_CHUNK` at a time: a delete writes about its own size to the WAL, so small passes
  are what still fits on a nearly full device.
- Compaction (VACUUM) runs only when nothing waits, a quarter of the file is free pages and
  the live data is at most COMPACT_MAX_LIVE (VACUUM copies it, twice, while holding the
  writer lock): measured on a 100 MB outbox with 2.5 MB left after a drain, VACUUM took
  0.12 s and left a 2.5 MB file; a 672k-event backlog (739 MB) drained with the default
  64 MiB resend window compacted to 88.8 MB in 2.4 s. PRAGMA incremental_vacuum needed
  auto_vacuum (a pointer-map write on every insert) and wrote ~98 MB of WAL for the 100 MB
  case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from presence_gateway.adapters.outbox_schema import scalar

ROW_OVERHEAD = 64      # bytes a row costs beyond its payload and topic (id, index entries, ...)
COST_SQL = f"length(payload) + length(topic) + {ROW_OVERHEAD}"
SHED_CHUNK = 2000      # rows looked at per query while choosing what to shed
COMPACT_MIN_FREE = 4 << 20   # compact only when at least this much of the file is free pages
COMPACT_MAX_LIVE = 256 << 20  # ... and the live data is at most this (VACUUM copies it)

# Shedding classes, in order; `n <= ?` bounds each to the rows chosen, `n < ?` protects the
# batch being committed.
DELIVERED = "delivered_at IS NOT NULL"
ANONYMOUS = "delivered_at IS NULL AND anon = 1"
ANY_WAITING = "delivered_at IS NULL"


@dataclass(frozen=True, slots=True)
class Budget:
    """Disk limits of the outbox file (0 = no limit) and the resend window."""

    max_bytes: int = 0
    min_free_bytes: int = 0
    keep_delivered_s: float = 0.0     # 0: delete on PUBACK (no resend possible)
    keep_delivered_bytes: int = 0     # 0: no byte cap beyond max_bytes

    @property
    def active(self) -> bool:
        return bool(self.max_bytes or self.min_free_bytes)


@dataclass(frozen=True, slots=True)
class Usage:
    page_size: int
    pages: int
    free_pages: int
    free_disk: int   # bytes available to this process on the device

    @property
    def live(self) -> int:
        return (self.pages - self.free_pages) * self.page_size

    @property
    def size(self) -> int:
        return self.pages * self.page_size


@dataclass(slots=True)
class Shed:
    """What one shedding pass removed (rows), by class."""

    delivered: int = 0
    anonymous: int = 0
    identified: int = 0
    delivered_bytes: int = 0

    @property
    def waiting(self) -> int:
        return self.anonymous + self.identified

    def add(self, other: Shed) -> None:
        self.delivered += other.delivered
        self.anonymous += other.anonymous
        self.identified += other.identified
        self.delivered_bytes += other.delivered_bytes


def free_disk(path: str) -> int:
    if path == ":memory:":
        return 1 << 62
    try:
        st = os.statvfs(Path(path).parent)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def file_size(path: str) -> int:
    """The main file's size on disk (a stat: cheap, and not worth a thread hop)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


async def measure(conn: aiosqlite.Connection, path: str) -> Usage:
    """Page accounting as seen inside the current transaction, and the device's free space.

    Pages committed to the WAL but not yet checkpointed will grow the main file later: that
    growth is taken off the free space now, or a checkpoint would jam on a full device."""
    page_size = await scalar(conn, "PRAGMA page_size", 4096)
    pages = await scalar(conn, "PRAGMA page_count")
    pending = max(0, pages * page_size - file_size(path))
    return Usage(page_size=page_size, pages=pages,
                 free_pages=await scalar(conn, "PRAGMA freelist_count"),
                 free_disk=free_disk(path) - pending)


def excess(budget: Budget, usage: Usage, incoming: int = 0) -> int:
    """Bytes of live data (plus `incoming`) beyond what the budget allows (<= 0: within)."""
    allowed = usage.size + usage.free_disk - budget.min_free_bytes
    if budget.max_bytes:
        allowed = min(allowed, budget.max_bytes)
    over = usage.live + incoming - allowed
    # Hysteresis: shed a little more than needed, so the next batches do not each shed a few.
    return over + max(16 * usage.page_size, allowed // 100) if over > 0 else over


async def shed(conn: aiosqlite.Connection, need: int, *, below: int = 1 << 62,
               include_waiting: bool = True) -> Shed:
    """Delete about `need` bytes (by row cost) in the shedding order; rows with n >= `below`
    are kept. Returns what went."""
    out = Shed()
    classes = (DELIVERED, ANONYMOUS, ANY_WAITING) if include_waiting else (DELIVERED,)
    for cls in classes:
        if need <= 0:
            break
        rows, freed, last, anon = await _choose(conn, cls, need, below)
        if not rows:
            continue
        await conn.execute(f"DELETE FROM outbox WHERE {cls} AND n <= ?", (last,))
        need -= freed
        if cls == DELIVERED:
            out.delivered += rows
            out.delivered_bytes += freed
        elif cls == ANONYMOUS:
            out.anonymous += rows
        else:
            out.anonymous += anon
            out.identified += rows - anon
    return out


async def _choose(conn: aiosqlite.Connection, cls: str, need: int,
                  below: int) -> tuple[int, int, int, int]:
    """The oldest rows of `cls` whose costs add up to `need`: (rows, bytes, last n, anon)."""
    rows = freed = anon = 0
    last = 0
    while freed < need:
        async with conn.execute(
                f"SELECT n, {COST_SQL}, anon FROM outbox WHERE {cls} AND n > ? AND n < ?"
                " ORDER BY n LIMIT ?", (last, below, SHED_CHUNK)) as cur:
            batch = list(await cur.fetchall())
        for n, cost, is_anon in batch:
            rows, freed, last, anon = rows + 1, freed + cost, n, anon + is_anon
            if freed >= need:
                break
        if len(batch) < SHED_CHUNK:
            break
    return rows, freed, last, anon


async def delivered_bytes(conn: aiosqlite.Connection) -> int:
    return int(await scalar(conn, f"SELECT sum({COST_SQL}) FROM outbox WHERE {DELIVERED}"))


async def prune_delivered(conn: aiosqlite.Connection, *, before: float,
                          over_bytes: int) -> tuple[int, int]:
    """Delete delivered rows marked before `before`, then the oldest until `over_bytes` more
    are gone; returns (rows, bytes)."""
    async with conn.execute(
            f"DELETE FROM outbox WHERE delivered_at < ? RETURNING {COST_SQL}",
            (before,)) as cur:
        costs = [r[0] for r in await cur.fetchall()]
    rows, freed = len(costs), sum(costs)
    if over_bytes - freed > 0:
        extra = await shed(conn, over_bytes - freed, include_waiting=False)
        rows, freed = rows + extra.delivered, freed + extra.delivered_bytes
    return rows, freed


async def compactable(conn: aiosqlite.Connection, path: str) -> Usage | None:
    """The usage when a VACUUM is worth it and cheap (see the module docstring), else None."""
    usage = await measure(conn, path)
    free = usage.free_pages * usage.page_size
    if free < COMPACT_MIN_FREE or free < usage.size // 4 or usage.live > COMPACT_MAX_LIVE:
        return None
    # VACUUM writes the live data to a temporary copy and then to the WAL: room for twice it.
    return usage if usage.free_disk > 2 * usage.live else None


async def vacuum(conn: aiosqlite.Connection) -> None:
    """VACUUM (outside any transaction), then a TRUNCATE checkpoint: the main file shrinks now,
    and the WAL, which just received a copy of the whole database, does not stay that big
    until the next write resets it."""
    await conn.execute("VACUUM")
    async with conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
        await cur.fetchall()
