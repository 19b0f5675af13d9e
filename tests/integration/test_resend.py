"""`events.resend` on the gateway: sealed commands re-queue delivered events with their original
bytes; anything else changes nothing. End to end: events a non-persistent Mosquitto
acknowledged and then lost to a kill -9 reach the subscriber after a resend."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.outbox_budget import Budget
from presence_gateway.core.commands import CommandGuard, sign
from presence_gateway.core.config import load_config
from presence_gateway.core.events import CommandRefused, GatewayStats, ResendResult
from presence_gateway.core.model import OutboundMessage
from presence_gateway.core.resend import EVENTS_RESEND, MAX_SPAN
from presence_gateway.core.sealed import seal
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.resend import resend
from presence_gateway.runtime.service import Service
from tests.contract import validate_event
from tests.integration.test_identity_e2e import mqtt_publish
from tests.integration.test_publisher import until
from tests.mqtt_helpers import Collector

KEY = b"resend-test-command-key-0123456789"
NOW = time.time()


def body(**args: Any) -> dict[str, Any]:
    return {"command": EVENTS_RESEND, "target": "s1/gw1", "id": f"cmd-{uuid.uuid4().hex[:12]}",
            "issued_at": int(NOW), **args}


def rows(path: Path) -> list[tuple[int, int, bool]]:
    """(n, seq, delivered) of every row, straight from the file."""
    with sqlite3.connect(path) as conn:
        return [(n, s, d is not None) for n, s, d in
                conn.execute("SELECT n, seq, delivered_at FROM outbox ORDER BY n")]


async def delivered_outbox(path: Path, n: int) -> Outbox:
    ob = await Outbox.open(str(path), max_rows=10_000, max_age_s=86400,
                           budget=Budget(keep_delivered_s=3600))
    await ob.append([OutboundMessage(id=f"id-{s}", seq=s, topic="t", payload=b"%d" % s)
                     for s in range(1, n + 1)])
    await ob.delete([r.rowid for r in await ob.oldest(n)])
    return ob


@pytest.mark.parametrize("payload", [
    orjson.dumps(body(from_sequence=1, to_sequence=5)),                        # not sealed
    sign(b"another-key-0123456789abcdef", body(from_sequence=1, to_sequence=5)),
    seal(KEY, "gateway-command/1", "offers.reload/s1/gw1",                    # other command
         orjson.dumps(body(from_sequence=1, to_sequence=5))),
    sign(KEY, {**body(from_sequence=1, to_sequence=5), "issued_at": int(NOW) - 3600}),
    sign(KEY, body(from_sequence=5, to_sequence=1)),
    sign(KEY, body(from_sequence=0, to_sequence=5)),
    sign(KEY, body(from_sequence=1, to_sequence=21)),                        # beyond last
    sign(KEY, body(from_sequence=1, to_sequence=MAX_SPAN + 1)),
    sign(KEY, body(from_sequence=1, to_sequence=5, since="2025-01-01T00:00:00Z")),
    sign(KEY, body(since="2025-01-01T00:00:00")),
    b"",
    b"PGS1" + b"\0" * 40,
])
async def test_a_refused_command_changes_nothing(tmp_path: Path, payload: bytes) -> None:
    guard = CommandGuard(KEY, store_id="s1", gateway_id="gw1")
    async with await delivered_outbox(tmp_path / "o.db", 20) as ob:
        before = rows(tmp_path / "o.db")
        events = await resend(guard, ob, payload, NOW)
        assert len(events) == 1 and isinstance(events[0], CommandRefused), events
        assert events[0].reason and events[0].command == EVENTS_RESEND
        assert rows(tmp_path / "o.db") == before and ob.size == 0


async def test_a_sealed_range_is_requeued_once_and_the_answer_names_the_gaps(
        tmp_path: Path) -> None:
    guard = CommandGuard(KEY, store_id="s1", gateway_id="gw1")
    async with await delivered_outbox(tmp_path / "o.db", 20) as ob:
        async with ob.transaction() as conn:  # rows 3 and 4 are no longer held
            await conn.execute("DELETE FROM outbox WHERE seq IN (3, 4)")
        command = sign(KEY, body(from_sequence=2, to_sequence=6))
        [ev] = await resend(guard, ob, command, NOW)
        assert isinstance(ev, ResendResult)
        assert (ev.requeued, ev.waiting, ev.missing, ev.oldest_held) == (3, 0, ((3, 4),), 1)
        assert [(r.seq, r.payload) for r in await ob.oldest(10)] == [
            (2, b"2"), (5, b"5"), (6, b"6")]
        [again] = await resend(guard, ob, command, NOW)  # the same command id: a replay
        assert isinstance(again, CommandRefused) and again.reason == "duplicate"
        [since] = await resend(guard, ob, sign(KEY, body(since="1970-01-01T00:00:00Z")), NOW)
        assert isinstance(since, ResendResult)
        assert (since.from_sequence, since.to_sequence, since.requeued, since.waiting) == (
            1, 20, 15, 3)


# -- end to end ------------------------------------------------------------------------------
class Idle:
    """A driver that captures nothing (the load is injected) and runs until stopped."""

    name = "idle"

    async def run(self, sink: object) -> None:
        await asyncio.Event().wait()


def seq_and_id(sub: Collector) -> dict[str, tuple[int, bytes]]:
    """id -> (sequence, bytes) of every stats event that arrived, duplicates merged by id;
    asserts that copies of one id carry the same bytes."""
    out: dict[str, tuple[int, bytes]] = {}
    for topic, payload, _ in sub.snapshot():
        if not topic.endswith("/events/presence.gateway.stats"):
            continue
        ev = orjson.loads(payload)
        if set(ev["data"]) != {"i"}:  # the gateway's own periodic stats
            continue
        prev = out.setdefault(ev["id"], (ev["sequence"], payload))
        assert prev == (ev["sequence"], payload), "a copy with other bytes"
    return out


def test_events_lost_by_a_killed_broker_are_recovered_by_resend(
        tmp_path: Path, mosquitto: Any) -> None:
    broker: LocalBroker = mosquitto()   # no persistence: a kill -9 loses what it held
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(
        "store: {id: s1}\ngateway: {id: gw1}\n"
        f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 20ms,"
        " keep_delivered: 1h}\n"
        f"mqtt: {{url: '{broker.url}', keepalive: 5}}\n"
        "offers: {command_key: env:PG_COMMAND_KEY}\n")
    cfg = load_config(str(cfg_path), env={"PG_COMMAND_KEY": KEY.decode()})
    total = 6000

    async def scenario(sub: Collector) -> tuple[dict[str, tuple[int, bytes]], set[int],
                                                 list[dict[str, Any]]]:
        svc = Service(cfg, RunOptions(mode=Mode.LIVE), [Idle()])
        task = asyncio.create_task(svc.run())
        assert await until(lambda: svc.runtime is not None and svc.runtime.publisher is not None
                           and svc.runtime.publisher.connected)
        rt = svc.runtime
        assert rt is not None
        sent: set[int] = set()
        for i in range(total // 100):   # load: 100 events every 10 ms
            msgs = rt.core.pipeline.inject([GatewayStats(time=time.time(), gateway="gw1",
                                                         counts={"i": i * 100 + k})
                                            for k in range(100)])
            sent |= {m.seq for m in msgs}
            rt.writer.add(msgs)
            if i == total // 200 - 10:
                # The subscriber goes away (its session persists): the broker acknowledges
                # the next events to the gateway and queues them in memory for it, so the
                # kill -9 below certainly loses acknowledged events (not only by timing).
                await asyncio.to_thread(sub.client.disconnect)
                await asyncio.to_thread(sub.client.loop_stop)
            if i == total // 200:
                broker.kill()    # kill -9 mid-stream, then back on the same port, empty
                await asyncio.sleep(0.3)
                broker.start()
                await asyncio.to_thread(sub.client.reconnect)
                sub.client.loop_start()
            await asyncio.sleep(0.01)
        assert rt.publisher is not None
        await rt.writer.drained()  # the last batches committed first, or flush sees them not
        assert await rt.publisher.flush(30), "the gateway could not deliver"
        await asyncio.sleep(1.0)
        got = seq_and_id(sub)
        lost = sent - {s for s, _ in got.values()}
        results: list[dict[str, Any]] = []
        if lost:
            cmd = sign(KEY, {**body(from_sequence=min(lost), to_sequence=max(lost)),
                             "issued_at": int(time.time())})
            await asyncio.to_thread(mqtt_publish, broker,
                                    f"{rt.core.topics.commands}/{EVENTS_RESEND}", cmd)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                    not results or sent - {s for s, _ in seq_and_id(sub).values()}):
                await asyncio.sleep(0.05)
                results = [orjson.loads(p) for t, p, _ in sub.snapshot()
                           if t.endswith(f"commands/{EVENTS_RESEND}/result")]
        svc.stop_event.set()
        await task
        return seq_and_id(sub), lost, results

    with Collector(broker.host, broker.port, "presence/#", persistent=True) as sub:
        got, lost, results = asyncio.run(scenario(sub))
    print(f"\n{len(lost)} of {total} events lost by the killed broker, recovered by resend")
    assert lost, "the kill -9 lost nothing: the test did not test anything"
    seqs = sorted(s for s, _ in got.values())
    assert len(got) == total and len(seqs) == len(set(seqs)), "each event once by id"
    assert set(range(seqs[0], seqs[0] + total)) == set(seqs)
    [result] = results
    validate_event(result)
    data = result["data"]
    assert (data["ok"], data["from_sequence"], data["to_sequence"], data["missing"]) == (
        True, min(lost), max(lost), [])
    assert data["requeued"] == max(lost) - min(lost) + 1
