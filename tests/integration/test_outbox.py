"""The SQLite outbox on a real file: order, bounds, persisted counters, mode 0600, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from presence_gateway.adapters.outbox import Outbox
from presence_gateway.core.model import OutboundMessage
from presence_gateway.errors import StoreError

ROOT = Path(__file__).resolve().parents[2]


def msgs(first_seq: int, n: int, topic: str = "p/v1/s/g/events/x") -> list[OutboundMessage]:
    return [OutboundMessage(id=f"id-{s}", seq=s, topic=topic, payload=b'{"n":%d}' % s,
                            qos=1, retain=s % 7 == 0, created=1_700_000_000.0 + s)
            for s in range(first_seq, first_seq + n)]


async def open_ob(path: Path, max_rows: int = 10_000, max_age_s: float = 3600.0) -> Outbox:
    return await Outbox.open(str(path), max_rows=max_rows, max_age_s=max_age_s)


async def test_append_oldest_delete_roundtrip(tmp_path: Path) -> None:
    async with await open_ob(tmp_path / "o.db") as ob:
        assert not ob.wakeup.is_set()
        await ob.append(msgs(1, 10))
        assert ob.wakeup.is_set()
        rows = await ob.oldest(4)
        assert [r.seq for r in rows] == [1, 2, 3, 4]
        assert rows[0].id == "id-1" and rows[0].payload == b'{"n":1}'
        assert rows[0].created == 1_700_000_001.0 and rows[0].qos == 1
        assert [r.retain for r in await ob.oldest(10)] == [s % 7 == 0 for s in range(1, 11)]
        after = await ob.oldest(100, after=rows[-1].rowid)
        assert [r.seq for r in after] == list(range(5, 11))
        await ob.delete([r.rowid for r in rows] + [after[1].rowid])
        assert await ob.depth() == 5
        assert [r.seq for r in await ob.oldest(100)] == [5, 7, 8, 9, 10]


async def test_rowids_never_reused_after_the_table_empties(tmp_path: Path) -> None:
    """A drainer's cursor (after=rowid) must never skip rows appended after a full drain."""
    async with await open_ob(tmp_path / "o.db") as ob:
        await ob.append(msgs(1, 3))
        rows = await ob.oldest(10)
        await ob.delete([r.rowid for r in rows])
        await ob.append(msgs(4, 2))
        new = await ob.oldest(10, after=rows[-1].rowid)
        assert [r.seq for r in new] == [4, 5]
    async with await open_ob(tmp_path / "o.db") as ob:  # also across a reopen
        await ob.delete([r.rowid for r in new])
        await ob.append(msgs(6, 1))
        assert [r.seq for r in await ob.oldest(10, after=new[-1].rowid)] == [6]


async def test_max_rows_drops_oldest_and_counts(tmp_path: Path) -> None:
    async with await open_ob(tmp_path / "o.db", max_rows=5) as ob:
        await ob.append(msgs(1, 3))
        await ob.append(msgs(4, 4))
        assert await ob.depth() == 5
        assert [r.seq for r in await ob.oldest(10)] == [3, 4, 5, 6, 7]
        assert ob.dropped == 2 and ob.dropped_total == 2
    async with await open_ob(tmp_path / "o.db", max_rows=5) as ob:
        assert ob.dropped == 0, "dropped counts since open"
        assert ob.dropped_total == 2, "the total is persisted"
        assert await ob.depth() == 5


async def test_max_age_drops_rows_stored_too_long_ago(tmp_path: Path) -> None:
    """Age is wall-clock time in the outbox, not the event's (capture) time."""
    async with await open_ob(tmp_path / "o.db", max_age_s=0.3) as ob:
        await ob.append(msgs(1, 4))  # created = 2023: would all be "old" by event time
        assert await ob.depth() == 4
        await asyncio.sleep(0.5)
        await ob.append(msgs(5, 2))
        assert [r.seq for r in await ob.oldest(10)] == [5, 6]
        assert ob.dropped == 4


async def test_last_seq_survives_deleting_everything_and_reopening(tmp_path: Path) -> None:
    async with await open_ob(tmp_path / "o.db") as ob:
        assert await ob.last_seq() == 0
        await ob.append(msgs(1, 5))
        await ob.append(msgs(6, 3))
        await ob.delete([r.rowid for r in await ob.oldest(100)])
        assert await ob.depth() == 0
        assert await ob.last_seq() == 8
    async with await open_ob(tmp_path / "o.db") as ob:
        assert await ob.last_seq() == 8
        assert await ob.depth() == 0


async def test_files_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "sub" / "o.db"
        async with await open_ob(path) as ob:
            await ob.append(msgs(1, 3))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                     for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert {"o.db", "o.db-wal", "o.db-shm"} <= set(modes), modes
    assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}


async def test_other_shells_share_the_file_through_transactions(tmp_path: Path) -> None:
    async with await open_ob(tmp_path / "o.db") as ob:
        async with ob.transaction() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS registry (k TEXT PRIMARY KEY)")
            await conn.execute("INSERT INTO registry VALUES ('a')")
        with pytest.raises(RuntimeError):
            async with ob.transaction() as conn:
                await conn.execute("INSERT INTO registry VALUES ('b')")
                raise RuntimeError("boom")
        async with ob.connection.execute("SELECT k FROM registry") as cur:
            assert [r[0] for r in await cur.fetchall()] == ["a"]
        await ob.append(msgs(1, 1))  # the outbox still works after a rolled-back transaction
        assert await ob.depth() == 1


async def test_not_a_database_is_an_actionable_store_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not sqlite, " * 100)
    with pytest.raises(StoreError, match="not an SQLite database"):
        await open_ob(path)


async def test_parent_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=str(tmp_path / "file")):
        await open_ob(tmp_path / "file" / "o.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_read_only_directory_is_a_permission_store_error(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            await open_ob(d / "o.db")
    finally:
        d.chmod(0o700)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with await open_ob(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    threads = threading.active_count()
    with pytest.raises(StoreError, match="newer") as refused:
        await open_ob(path)
    # The refused file's connection is closed, not left with its worker thread running until
    # the garbage collector finds it (after this loop, maybe: "Event loop is closed" then).
    # `refused` holds the frames, and with them the connection, alive meanwhile.
    for _ in range(50):
        if threading.active_count() == threads:
            break
        await asyncio.sleep(0.02)
    assert threading.active_count() == threads, refused.value


WRITER = """
import asyncio, sys
from presence_gateway.core.model import OutboundMessage
from presence_gateway.adapters.outbox import Outbox

async def main() -> None:
    ob = await Outbox.open(sys.argv[1], max_rows=10**7, max_age_s=86400)
    seq = await ob.last_seq()
    while True:
        batch = [OutboundMessage(f"id-{s}", s, "t", b"x" * 200) for s in range(seq + 1, seq + 51)]
        await ob.append(batch)
        seq += 50
        print(seq, flush=True)

asyncio.run(main())
"""


def test_sigkill_mid_stream_loses_at_most_the_open_batch(tmp_path: Path) -> None:
    """A writer appending batches of 50 is SIGKILLed: committed batches are whole, with no
    duplicate seq and no gap; at most the batch being committed is missing."""
    path = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    reported = 0
    for line in proc.stdout:
        reported = int(line)
        if reported >= 2000:
            break
    proc.send_signal(signal.SIGKILL)
    for line in proc.stdout:  # batches committed (and reported) before the kill landed
        reported = int(line)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert reported >= 2000, "the writer died before committing 40 batches"
    with sqlite3.connect(path) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY n")]
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert len(seqs) == len(set(seqs)), "duplicate seq"
    assert seqs == list(range(1, len(seqs) + 1)), "gap or reordering"
    assert len(seqs) % 50 == 0, "a batch was committed in part"
    # Printed after COMMIT: everything reported is there, plus at most the batch whose commit
    # finished but whose line was never printed.
    assert reported <= len(seqs) <= reported + 50
    assert meta["last_seq"] == len(seqs)


async def test_a_second_row_with_the_same_event_id_is_not_stored(tmp_path: Path) -> None:
    async with await open_ob(tmp_path / "o.db") as ob:
        await ob.append(msgs(1, 3))
        await ob.append(msgs(2, 3))  # id-2, id-3 again, id-4 new
        assert [r.id for r in await ob.oldest(10)] == ["id-1", "id-2", "id-3", "id-4"]
        assert await ob.depth() == ob.size == 4 and ob.duplicates == 2
    con = sqlite3.connect(tmp_path / "o.db")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO outbox (id, seq, topic, payload, qos, retain, created,"
                        " stored_at) VALUES ('id-1', 9, 't', x'00', 1, 0, 0, 0)")
    finally:
        con.close()


async def test_v1_file_with_duplicate_ids_migrates_to_one_row_each(tmp_path: Path) -> None:
    from presence_gateway.adapters.outbox import _MIGRATIONS
    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    for sql in _MIGRATIONS[1]:
        con.execute(sql)
    for n, (i, seq) in enumerate([("a", 1), ("a", 1), ("b", 2), ("a", 1)]):
        con.execute("INSERT INTO outbox (id, seq, topic, payload, qos, retain, created,"
                    " stored_at) VALUES (?, ?, 't', ?, 1, 0, 0, 0)", (i, seq, bytes([n])))
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    async with await open_ob(path) as ob:
        rows = await ob.oldest(10)
        assert [(r.id, r.payload) for r in rows] == [("a", b"\x00"), ("b", b"\x02")]
        assert await ob.depth() == 2


async def test_a_transaction_cancelled_while_it_begins_leaves_none_open(tmp_path: Path) -> None:
    """A caller cancelled while its BEGIN waits in aiosqlite's queue: the worker thread still
    runs the BEGIN after the caller has gone (a cancelled await does not stop it), and the
    next transaction used to fail with "cannot start a transaction within a transaction" (a
    gateway's last snapshot at shutdown was lost so). Nothing was written in the orphan: the
    next transaction closes it and goes ahead, and the data of both are intact."""
    async with await open_ob(tmp_path / "o.db") as ob:
        await ob.append(msgs(1, 3))
        entered = False

        async def slow_writer() -> None:
            nonlocal entered
            async with ob.transaction() as conn:
                entered = True
                await conn.execute("UPDATE meta SET value = value WHERE key = 'last_seq'")

        task = asyncio.create_task(slow_writer())
        await asyncio.sleep(0)  # it holds the lock, its BEGIN is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not entered
        await asyncio.sleep(0.05)  # the worker thread has run the orphaned BEGIN by now
        await ob.append(msgs(4, 2))
        assert [r.seq for r in await ob.oldest(10)] == [1, 2, 3, 4, 5]
    async with await open_ob(tmp_path / "o.db") as ob:  # committed, not left in a transaction
        assert await ob.depth() == 5
