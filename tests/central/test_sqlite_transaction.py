"""The central SQLite shell's transactions survive their caller's cancellation.

aiosqlite runs every statement on its own worker thread; cancelling the task that awaits one
does not stop it. A consumer task cancelled while its `BEGIN IMMEDIATE` waited (a partition
handed over, central stopping) once left the shared connection inside a transaction: every
later BEGIN failed "cannot start a transaction within a transaction", so the next consumer on
that connection never held a lease (a flaky fleet test, tests/fleet/test_resend_loop.py).
Here another connection holds the write lock, so the BEGIN reliably waits in SQLite's busy
handler when the cancellation comes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from presence_gateway.central.db import SqliteDb, open_db


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDb]:
    opened = await open_db(str(tmp_path / "central.db"))
    assert isinstance(opened, SqliteDb)
    yield opened
    await opened.close()


async def write(db: SqliteDb, owner: str) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO members (owner, expires) VALUES (?, 1)", owner)


async def test_cancelled_while_begin_waits_leaves_the_connection_usable(
        db: SqliteDb, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "central.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # our BEGIN now waits (busy_timeout) on the thread
        task = asyncio.create_task(write(db, "gone"))
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.sleep(0.05)
        task.cancel()  # cancelled again while it cleans up: the clean-up still completes
        other.execute("ROLLBACK")  # the queued BEGIN runs now, after its caller has gone
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        other.close()
    assert not db.conn.in_transaction
    assert await db.heartbeat("a", 0.0, 10.0) == ["a"]  # a transaction works again
    assert await db.fetch("SELECT owner FROM members ORDER BY owner") == [("a",)]


async def test_a_transaction_waiting_behind_the_cancelled_one_is_not_joined(
        db: SqliteDb, tmp_path: Path) -> None:
    """The clean-up holds the lock until the rollback ran: a transaction queued behind the
    cancelled one begins on a clean connection (its BEGIN would fail otherwise)."""
    other = sqlite3.connect(tmp_path / "central.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        first = asyncio.create_task(write(db, "gone"))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(write(db, "b"))  # waits for the lock
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)
        other.execute("ROLLBACK")
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
    finally:
        other.close()
    assert not db.conn.in_transaction
    assert await db.fetch("SELECT owner FROM members") == [("b",)]


async def test_cancelled_inside_the_body_rolls_back(db: SqliteDb) -> None:
    written = asyncio.Event()

    async def body() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO members (owner, expires) VALUES ('x', 1)")
            written.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not db.conn.in_transaction
    assert await db.fetch("SELECT owner FROM members") == []
    await write(db, "y")
    assert await db.fetch("SELECT owner FROM members") == [("y",)]
