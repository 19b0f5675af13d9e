"""The outbox writer: one task commits; producers never wait on, or race, a commit.

The old writer awaited the outbox commit and only then cleared its pending list, while the
ticker, the consumer and the control plane all called it: a message added during the commit
was never stored, and overlapping flushes stored one message twice. Here the real SQLite
outbox sits behind a commit that is made slow on purpose, and producers add while it runs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from presence_gateway.adapters.outbox import Outbox
from presence_gateway.core.model import OutboundMessage
from presence_gateway.errors import DiskFull
from presence_gateway.runtime.writer import OutboxWriter, Taps


def message(i: int) -> OutboundMessage:
    return OutboundMessage(id=f"m{i}", seq=i, topic="p/v1/s/g/events/x", payload=b"{}")


class SlowCommit:
    """The real outbox, with every commit held for `delay` seconds (a slow SD card)."""

    def __init__(self, outbox: Outbox, delay: float) -> None:
        self.outbox, self.delay = outbox, delay
        self.commits: list[int] = []
        self.in_commit = asyncio.Event()

    async def append(self, messages: Sequence[OutboundMessage]) -> None:
        self.in_commit.set()
        await asyncio.sleep(self.delay)
        await self.outbox.append(messages)
        self.commits.append(len(messages))
        self.in_commit.clear()


async def stored_ids(outbox: Outbox) -> list[str]:
    return [r.id for r in await outbox.oldest(100_000)]


async def test_messages_added_during_a_slow_commit_are_stored_once(tmp_path: Path) -> None:
    async with await Outbox.open(str(tmp_path / "o.db"), max_rows=100_000,
                                 max_age_s=86400) as outbox:
        sink = SlowCommit(outbox, delay=0.2)
        writer = OutboxWriter(sink, batch_max=1, interval=0.0)
        task = asyncio.create_task(writer.run())
        writer.add([message(1)])
        await asyncio.wait_for(sink.in_commit.wait(), 5)
        writer.add([message(2)])   # the ticker, during the commit
        writer.add([message(3)])   # the control plane, during the same commit
        await asyncio.wait_for(writer.drained(), 5)
        writer.close()
        await task
        assert await stored_ids(outbox) == ["m1", "m2", "m3"]
        assert sink.commits == [1, 2] and outbox.duplicates == 0


async def test_three_producers_against_slow_commits_lose_and_double_nothing(
        tmp_path: Path) -> None:
    rng = random.Random(5)
    async with await Outbox.open(str(tmp_path / "o.db"), max_rows=100_000,
                                 max_age_s=86400) as outbox:
        sink = SlowCommit(outbox, delay=0.01)
        seen: list[str] = []
        writer = OutboxWriter(sink, batch_max=16, interval=0.005,
                              taps=Taps(on_message=lambda m: seen.append(m.id)))
        task = asyncio.create_task(writer.run())

        async def producer(first: int) -> None:
            for i in range(first, first + 300, 3):
                writer.add([message(i), message(i + 1), message(i + 2)][:rng.randint(1, 3)])
                await asyncio.sleep(rng.choice((0, 0, 0.001)))

        await asyncio.gather(producer(0), producer(1000), producer(2000))
        writer.close()
        await asyncio.wait_for(task, 10)
        ids = await stored_ids(outbox)
        assert len(ids) == len(set(ids)) == len(seen), "lost or doubled"
        assert sorted(ids) == sorted(seen) and outbox.duplicates == 0
        assert len(sink.commits) > 3, "commits overlapped the producers"
        assert max(sink.commits) <= writer.limit


async def test_without_an_outbox_messages_reach_the_taps_only() -> None:
    seen: list[str] = []
    writer = OutboxWriter(None, batch_max=4, interval=0.0,
                          taps=Taps(on_message=lambda m: seen.append(m.id)))
    task = asyncio.create_task(writer.run())
    writer.add([message(1), message(2)])
    await asyncio.wait_for(writer.drained(), 5)
    writer.close()
    await task
    assert seen == ["m1", "m2"] and writer.committed == 2


class FullDisk:
    """A sink whose device is full until `free()`: every append raises DiskFull."""

    def __init__(self) -> None:
        self.full = True
        self.stored: list[OutboundMessage] = []
        self.refused = 0

    async def append(self, messages: Sequence[OutboundMessage]) -> None:
        if self.full:
            self.refused += 1
            raise DiskFull("o.db: disk full")
        self.stored.extend(messages)


async def test_a_full_disk_holds_a_bounded_batch_and_never_blocks_producers(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = FullDisk()
    writer = OutboxWriter(sink, batch_max=10, interval=0.0, limit=50)
    task = asyncio.create_task(writer.run())
    identified = {i for i in range(300) if i % 10 == 0}
    for i in range(300):
        writer.add([replace(message(i), anonymous=i not in identified)])
        await asyncio.wait_for(writer.room(), 1)  # a producer is never held
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    assert not task.done() and writer.disk_full and sink.refused >= 1
    assert writer.waiting <= writer.limit + 10
    sink.full = False
    await asyncio.wait_for(writer.drained(), 15)
    writer.close()
    await asyncio.wait_for(task, 5)
    kept = {int(m.id[1:]) for m in sink.stored}
    assert identified <= kept, "anonymous messages go first"
    assert len(kept) + writer.dropped == 300 and writer.dropped > 0
    assert not writer.disk_full
    full = [r for r in caplog.records if "disk full" in r.getMessage()]
    assert len(full) == 1, "logged once per episode"
