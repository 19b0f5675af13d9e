"""The outbox's disk budget on real files: bytes not rows, anonymous events dropped first, a
full device that never stops capture, delivered events kept for resend, compaction."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.outbox_budget import Budget, file_size
from presence_gateway.core.config import load_config
from presence_gateway.core.events import GatewayStats
from presence_gateway.core.model import OutboundMessage
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from presence_gateway.runtime.writer import OutboxWriter
from tests.conftest import Subscriber
from tests.integration.test_publisher import make, running, until
from tests.integration.test_resend import Idle

TOPIC = "presence/v1/s1/gw1/events/x"


def identified(seq: int) -> bool:
    return seq % 10 == 0


def msgs(first: int, n: int, size: int = 700) -> list[OutboundMessage]:
    pad = "x" * size
    return [OutboundMessage(id=f"id-{s}", seq=s, topic=TOPIC,
                            payload=orjson.dumps({"seq": s, "pad": pad}), created=float(s),
                            anonymous=not identified(s))
            for s in range(first, first + n)]


def disk_bytes(path: Path) -> int:
    return file_size(str(path)) + file_size(f"{path}-wal")


async def open_ob(path: Path, budget: Budget) -> Outbox:
    return await Outbox.open(str(path), max_rows=10**7, max_age_s=86400, budget=budget)


async def seqs(ob: Outbox) -> list[int]:
    return [r.seq for r in await ob.oldest(10**6)]


async def test_over_max_bytes_the_oldest_anonymous_events_go_first(tmp_path: Path) -> None:
    """The bound is bytes (not rows); identified events survive while anonymous ones remain."""
    limit = 2_000_000
    async with await open_ob(tmp_path / "o.db", Budget(max_bytes=limit)) as ob:
        for first in range(1, 10_001, 500):
            await ob.append(msgs(first, 500))
        held = await seqs(ob)
        pages = next(iter(await ob.connection.execute_fetchall("PRAGMA page_count")))[0]
        free = next(iter(await ob.connection.execute_fetchall("PRAGMA freelist_count")))[0]
        live = (pages - free) * 4096
    assert live <= limit
    assert {s for s in range(1, 10_001) if identified(s)} <= set(held), "an identified event"
    anon = [s for s in held if not identified(s)]
    newest = [s for s in range(1, 10_001) if not identified(s)][-len(anon):]
    assert anon == newest, "the anonymous events kept are the newest"
    assert ob.shed.identified == 0 and ob.shed.anonymous == 10_000 - len(held)
    assert ob.dropped_total == ob.shed.anonymous and ob.size == len(held)


async def test_delivered_events_are_kept_and_requeued_with_their_original_bytes(
        tmp_path: Path) -> None:
    budget = Budget(keep_delivered_s=3600)
    async with await open_ob(tmp_path / "o.db", budget) as ob:
        sent = msgs(1, 10)
        await ob.append(sent)
        rows = await ob.oldest(5)
        await ob.delete([r.rowid for r in rows])
        assert await seqs(ob) == [6, 7, 8, 9, 10] and ob.size == 5
        assert ob.delivered_bytes > 5 * 700
        done = await ob.requeue(3, 12)
        assert (done.requeued, done.waiting, done.held) == (3, 5, (3, 4, 5, 6, 7, 8, 9, 10))
        again = await ob.oldest(100)
        assert [r.seq for r in again] == [6, 7, 8, 9, 10, 3, 4, 5] and ob.size == 8
        by_seq = {m.seq: m for m in sent}
        assert all((r.id, r.payload, r.topic) == (by_seq[r.seq].id, by_seq[r.seq].payload,
                                                  by_seq[r.seq].topic) for r in again)
        # the requeued rows come after the cursor of a reader that had read everything
        assert [r.seq for r in await ob.oldest(100, after=rows[-1].rowid + 5)] == [3, 4, 5]
    async with await open_ob(tmp_path / "o.db", budget) as ob:  # the marks persist
        assert ob.size == 8 and 2 * 700 < ob.delivered_bytes < 2 * 900
        assert (await ob.requeue(1, 2)).requeued == 2 and ob.delivered_bytes == 0


async def test_delivered_events_are_bounded_by_age_and_bytes(tmp_path: Path) -> None:
    budget = Budget(keep_delivered_s=3600, keep_delivered_bytes=20 * 800)
    async with await open_ob(tmp_path / "o.db", budget) as ob:
        await ob.append(msgs(1, 100))
        await ob.delete([r.rowid for r in await ob.oldest(100)])
        assert ob.size == 0
        assert 0 < ob.delivered_bytes <= budget.keep_delivered_bytes
        kept = (await ob.requeue(1, 100)).held
        assert kept == tuple(range(101 - len(kept), 101)) and 10 <= len(kept) <= 20
        await ob.delete([r.rowid for r in await ob.oldest(100)])
        await ob.tidy(now=10**12)  # far past the window: every delivered row goes
        assert (await ob.requeue(1, 100)).held == () and ob.delivered_bytes == 0


async def test_the_file_shrinks_after_a_backlog_drains(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with await open_ob(path, Budget()) as ob:
        for first in range(1, 30_001, 1000):
            await ob.append(msgs(first, 1000))
        await ob.connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        before = file_size(str(path))
        while rows := await ob.oldest(5000):
            await ob.delete([r.rowid for r in rows])
        await ob.append(msgs(30_001, 10))
        await ob.tidy()
        assert ob.compactions == 0, "not while events wait"
        await ob.delete([r.rowid for r in await ob.oldest(100)])
        await ob.tidy()
        after = file_size(str(path))
        print(f"\noutbox file: {before / 1e6:.1f} MB with 30,000 waiting events,"
              f" {after / 1e6:.2f} MB after the drain and compaction")
    assert ob.compactions == 1 and after < before / 20


# -- a full device ----------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs (root only; skipped where mount is not permitted)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, leave: int = 0) -> int:
    """Write `path` until the device has `leave` bytes free (or is full); the bytes written."""
    written = 0
    with open(path, "ab") as f:
        while True:
            st = os.statvfs(path.parent)
            room = st.f_bavail * st.f_frsize - leave
            if room <= 0:
                break
            try:
                f.write(b"\0" * min(room, 65536))
                f.flush()
                written += min(room, 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return written


async def test_a_full_disk_never_stops_capture_and_delivery_resumes(
        small_disk: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    """With a free-space floor the outbox sheds inside its own file when another writer fills
    the device; capture goes on, identified events survive, delivery resumes, the file
    shrinks after the drain."""
    path = small_disk / "gateway.db"
    async with await open_ob(path, Budget(min_free_bytes=8 << 20)) as ob:
        writer = OutboxWriter(ob, batch_max=100, interval=0.02, limit=3000)
        task = asyncio.create_task(writer.run())
        produced: list[OutboundMessage] = []

        async def produce(first: int, n: int) -> None:
            for start in range(first, first + n, 100):
                chunk = msgs(start, 100)
                produced.extend(chunk)
                writer.add(chunk)
                await writer.room()
                await asyncio.sleep(0.005)

        await produce(1, 6000)          # broker away: ~5 MB waits in the outbox
        await writer.drained()
        # Another writer takes the device down to 7 MB, below the 8 MB floor: the outbox sheds
        # anonymous events inside its own file (the WAL still has room), nothing is dropped.
        ballast = fill(small_disk / "ballast", leave=7 << 20)
        await produce(6001, 4000)
        await asyncio.wait_for(writer.drained(), 20)
        assert not task.done() and ob.shed.anonymous > 0 and writer.dropped == 0
        in_file = (ob.shed.anonymous, ob.shed.identified)
        # Then the device fills up entirely: whatever SQLite cannot write waits in memory
        # (bounded, the oldest anonymous dropped first) and capture still goes on.
        ballast += fill(small_disk / "ballast")
        full_at = len(produced)
        await produce(10_001, 4000)
        await asyncio.sleep(0.3)
        assert not task.done(), "the writer must keep running on a full disk"
        print(f"\nbelow the floor: {in_file[0]} anonymous, {in_file[1]} identified events"
              f" dropped in the file; then full ({ballast / 1e6:.1f} MB ballast):"
              f" {len(produced) - full_at} captured meanwhile, {ob.shed.anonymous - in_file[0]}"
              f" more dropped in the file, {writer.dropped} from memory;"
              f" file {disk_bytes(path) / 1e6:.1f} MB")
        (small_disk / "ballast").unlink()  # space comes back
        await produce(14_001, 500)
        broker = mosquitto()
        sub = subscriber(broker, "presence/#")
        async with running(make(broker.port, ob)) as pub_task:
            await asyncio.wait_for(writer.drained(), 20)
            assert await until(lambda: ob.size == 0, 60), \
                (ob.size, list(await ob.connection.execute_fetchall(
                    "SELECT count(*) FROM outbox")), pub_task.done(), ob.disk_full)
            lost = ob.shed.waiting + writer.dropped + ob.dropped
            await sub.until(len(produced) - lost + 1, 20, distinct=True)  # + the status
            assert not pub_task.done()
        writer.close()
        await task
        got = {orjson.loads(p)["seq"] for p in sub.payloads() if p.startswith(b"{")}
        assert len(got) == len(produced) - lost, "every event stored was delivered"
        # Anonymous events went first; identified ones only once no anonymous one was left.
        assert ob.shed.anonymous > 5 * ob.shed.identified
        missing_identified = {m.seq for m in produced if identified(m.seq)} - got
        assert len(missing_identified) <= ob.shed.identified + writer.dropped
        assert set(range(14_001, 14_501)) <= got, "events after space returned"
        before = disk_bytes(path)
        await ob.tidy()
        after = disk_bytes(path)
        print(f"after the drain: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (main + WAL)")
        assert ob.compactions == 1 and file_size(str(path)) < 1_000_000
        with contextlib.suppress(FileNotFoundError):
            (small_disk / "ballast").unlink()


async def test_acks_that_cannot_be_written_on_a_full_disk_are_all_kept(small_disk: Path) -> None:
    """Two deletes failing at once on a full device (maintenance retrying earlier acks while
    the publisher deletes new ones) keep both sets of keys: each is written once space
    returns, so the queue depth stays true and no acknowledged row is left waiting."""
    path = small_disk / "o.db"
    async with await open_ob(path, Budget()) as ob:
        await ob.append(msgs(1, 300))
        rows = [r.rowid for r in await ob.oldest(300)]
        fill(small_disk / "ballast")
        await ob.delete(rows[:100])          # fails: kept for a retry
        assert ob.disk_full and ob.size == 300
        await asyncio.gather(ob.tidy(), ob.delete(rows[100:200]))  # both fail at once
        assert ob.size == 300
        (small_disk / "ballast").unlink()
        await ob.append(msgs(301, 10))       # writable again: the kept acks are written
        assert ob.size == 110
        assert await seqs(ob) == list(range(201, 311))


def test_a_live_gateway_rides_out_a_full_disk(small_disk: Path,
                                             mosquitto: Callable[..., LocalBroker]) -> None:
    """The whole service (writer, publisher, control plane) on a device filled to the last
    byte: it keeps running, delivers everything it kept once space returns, stops cleanly."""
    broker = mosquitto()
    cfg_path = small_disk.parent / "gateway.yaml"
    cfg_path.write_text(
        "store: {id: s1}\ngateway: {id: gw1}\n"
        f"storage: {{path: '{small_disk / 'gw.db'}', batch_interval: 20ms, max_bytes: 0,"
        " min_free_bytes: 0}\n"
        f"mqtt: {{url: '{broker.url}', keepalive: 5}}\n")
    cfg = load_config(str(cfg_path), env={})

    async def scenario(sub: Subscriber) -> tuple[set[int], int, bool]:
        svc = Service(cfg, RunOptions(mode=Mode.LIVE), [Idle()])
        task = asyncio.create_task(svc.run())
        assert await until(lambda: svc.runtime is not None and svc.runtime.publisher is not None
                           and svc.runtime.publisher.connected)
        rt = svc.runtime
        assert rt is not None and rt.publisher is not None
        sent: set[int] = set()

        async def inject(n: int) -> None:
            for _ in range(n // 100):
                msgs = rt.core.pipeline.inject([GatewayStats(time=time.time(), gateway="gw1",
                                                             counts={"pad": "x" * 700})
                                                for _ in range(100)])
                sent.update(m.seq for m in msgs)
                rt.writer.add(msgs)
                await asyncio.sleep(0.01)

        await inject(2000)
        await rt.writer.drained()  # committed first, or flush may see an empty outbox
        assert await rt.publisher.flush(20)
        ballast = small_disk / "ballast"
        fill(ballast)
        await inject(4000)               # the device is full to the last byte
        await rt.control.tend(time.time())  # maintenance on a full disk: skipped, no error
        await asyncio.sleep(0.5)
        was_full = rt.writer.disk_full or rt.outbox.disk_full
        assert not task.done(), "the gateway must keep running on a full disk"
        ballast.unlink()
        await inject(500)
        assert await rt.publisher.flush(30), "delivery resumes when space returns"
        lost = rt.writer.dropped + rt.outbox.shed.waiting + rt.outbox.dropped
        await sub.until(len(sent) - lost, 20, distinct=True)
        svc.stop_event.set()
        await task                       # a clean stop, no StoreError
        return sent, lost, was_full

    with Subscriber(broker.host, broker.port, "presence/v1/s1/gw1/events/#") as sub:
        sent, lost, was_full = asyncio.run(scenario(sub))
    got = {ev["sequence"] for ev in sub.events() if set(ev["data"]) == {"pad"}}
    print(f"\nlive gateway on a full disk: {len(sent)} events, {lost} dropped, {len(got)}"
          " delivered")
    assert was_full and got <= sent and len(got) == len(sent) - lost
