"""The central PostgreSQL shell's transactions survive their caller's cancellation.

The SQLite shell once left its connection inside a transaction when a consumer task was
cancelled during `BEGIN` (tests/central/test_sqlite_transaction.py). `PostgresDb` leans on
asyncpg instead: a cancelled query is cancelled on the server (CancelRequest) and the
connection waits for that before it is used again; `Connection.transaction()` rolls back when
its body raises; and the pool's release (shielded from cancellation) rolls back whatever
transaction is still open, unlocks advisory locks and `RESET ALL`s before another acquirer
gets the connection. These tests hold that to the real server: a transaction cancelled while
it waits on a lock another connection holds, inside its body, during its `COMMIT`, or at any
step of a sweep through acquire/BEGIN/statement/COMMIT leaves no open transaction and no
borrowed connection behind, none of its writes is visible, and the next transaction works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from presence_gateway.central.db import PostgresDb, open_db


@pytest.fixture
async def db(pg_url: str) -> AsyncIterator[PostgresDb]:
    """Also: asyncpg never had to roll back for us. The pool's release does when a
    connection comes back inside a transaction, but says so through the loop's exception
    handler ("Resetting connection with an active transaction", an ERROR in our logs)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(str(ctx["message"])))
    opened = await open_db(pg_url)
    assert isinstance(opened, PostgresDb)
    try:
        yield opened
        await opened.close()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


@pytest.fixture
async def other(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection outside the pool: holds the locks our transactions wait on."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


async def write(db: PostgresDb, owner: str, then: str | None = None) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO members (owner, expires) VALUES (?, 1)", owner)
        if then is not None:
            await db.execute(then)


async def assert_clean(db: PostgresDb, other: asyncpg.Connection) -> None:
    """Every pooled connection is back and idle (not idle in transaction), and the pool
    still serves a transaction (a leaked connection per cancellation would exhaust it)."""
    async with asyncio.timeout(10):
        for _ in range(1000):  # a cancelled task's release is shielded: it ends after it
            if db.pool.get_idle_size() == db.pool.get_size():
                break
            await asyncio.sleep(0.01)
        assert db.pool.get_idle_size() == db.pool.get_size()
        states = await other.fetch(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        assert states and {r["state"] for r in states} == {"idle"}
        assert await db.fetchval("SELECT 1") == 1
        assert "ok" in await db.heartbeat("ok", 0.0, 10.0)
        await db.execute("DELETE FROM members WHERE owner = 'ok'")


async def owners(db: PostgresDb) -> list[str]:
    return [str(r[0]) for r in await db.fetch("SELECT owner FROM members ORDER BY owner")]


async def test_cancelled_while_waiting_on_an_advisory_lock(
        db: PostgresDb, other: asyncpg.Connection) -> None:
    await other.execute("SELECT pg_advisory_lock(7)")
    task = asyncio.create_task(write(db, "gone", "SELECT pg_advisory_xact_lock(7)"))
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting on the server for the lock
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # cancelled again while it cleans up: the clean-up still completes
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_clean(db, other)
    await other.execute("SELECT pg_advisory_unlock(7)")
    assert await owners(db) == []
    await write(db, "y", "SELECT pg_advisory_xact_lock(7)")  # the lock is free for us now
    assert await owners(db) == ["y"]


async def test_cancelled_while_waiting_on_a_row_lock(
        db: PostgresDb, other: asyncpg.Connection) -> None:
    await db.heartbeat("a", 0.0, 10.0)
    tx = other.transaction()
    await tx.start()
    await other.execute("UPDATE members SET expires = 99 WHERE owner = 'a'")
    task = asyncio.create_task(db.heartbeat("a", 5.0, 10.0))  # waits for other's row lock
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tx.rollback()
    await assert_clean(db, other)
    assert await db.fetch("SELECT owner, expires FROM members") == [("a", 10.0)]
    assert await db.heartbeat("a", 5.0, 10.0) == ["a"]


async def test_cancelled_inside_the_body_rolls_back(
        db: PostgresDb, other: asyncpg.Connection) -> None:
    written = asyncio.Event()

    async def body() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO members (owner, expires) VALUES ('x', 1)")
            await db.execute("SELECT pg_advisory_lock(8)")  # session level: reset must unlock
            await db.execute("SET statement_timeout = 1234")  # session level: reset must undo
            written.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_clean(db, other)
    assert await owners(db) == []
    assert await other.fetchval("SELECT pg_try_advisory_lock(8)")
    await other.execute("SELECT pg_advisory_unlock(8)")
    async with db.transaction():  # the only connection of the pool: the one cancelled
        assert await db.fetchval("SHOW statement_timeout") == "0"
    await write(db, "y")
    assert await owners(db) == ["y"]


async def test_cancelled_during_commit(db: PostgresDb, other: asyncpg.Connection) -> None:
    """A deferred unique constraint is checked at COMMIT, and there it waits for another
    transaction's uncommitted row with the same key: a cancellation lands inside COMMIT."""
    await db.execute("CREATE TABLE deferred (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    tx = other.transaction()
    await tx.start()
    await other.execute("INSERT INTO deferred VALUES (1)")
    task = asyncio.create_task(write(db, "gone", "INSERT INTO deferred VALUES (1)"))
    await asyncio.sleep(0.3)
    assert not task.done()  # its COMMIT waits for ours
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tx.rollback()
    await assert_clean(db, other)
    assert await owners(db) == []
    assert await db.fetch("SELECT k FROM deferred") == []
    await write(db, "y", "INSERT INTO deferred VALUES (1)")
    assert await owners(db) == ["y"]


async def test_cancelled_while_waiting_for_a_pooled_connection(
        db: PostgresDb, other: asyncpg.Connection) -> None:
    """Every connection of the pool (8) is in a transaction waiting on a lock: the next
    transaction waits in acquire, and its cancellation takes nothing from the pool."""
    await other.execute("SELECT pg_advisory_lock(9)")
    busy = [asyncio.create_task(write(db, f"b{i}", "SELECT pg_advisory_xact_lock(9)"))
            for i in range(8)]
    await asyncio.sleep(0.3)
    assert db.pool.get_size() == 8 and db.pool.get_idle_size() == 0
    waiting = asyncio.create_task(write(db, "gone"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await other.execute("SELECT pg_advisory_unlock(9)")
    await asyncio.gather(*busy)
    await assert_clean(db, other)
    assert await owners(db) == [f"b{i}" for i in range(8)]


async def test_cancelled_at_every_step(db: PostgresDb, other: asyncpg.Connection) -> None:
    """Cancel after 0, 1, 2, ... turns of the event loop: in acquire, in flight of BEGIN, of
    the INSERT, of the COMMIT, after it. More cancellations than the pool has connections
    (8): a leaked connection per cancellation would exhaust it. Each write either landed
    whole or not at all (a cancelled COMMIT may have committed already)."""
    steps = 40
    landed: set[str] = set()
    for k in range(steps):
        task = asyncio.create_task(write(db, f"k{k:02}"))
        for _ in range(k):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            landed.add(f"k{k:02}")
        except asyncio.CancelledError:
            pass
    await assert_clean(db, other)
    assert landed <= set(await owners(db))
    assert len(await owners(db)) < steps  # some were cancelled before they committed
