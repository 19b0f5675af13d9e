"""The closed loop: a broker loses events it had acknowledged (kill -9 of a non-persistent
Mosquitto); central sees the hole in `sequence`, sends the sealed `events.resend`, the real
gateway re-queues the events it keeps (storage.keep_delivered), and central fills the hole:
every event stored once, in order, no gap, no hole skipped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker, find_mosquitto
from presence_gateway.central.consumer import Options
from presence_gateway.central.db import open_db
from presence_gateway.core.config import Endpoint, load_config
from presence_gateway.core.events import GatewayStats
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.fleet.test_central import all_consuming, consumer, ordered_per_gateway
from tests.integration.test_publisher import until
from tests.integration.test_resend import Idle

KEY = "central-resend-key-0123456789abcdef"
PARTS = 4


async def test_central_asks_for_a_hole_and_the_gateway_fills_it(tmp_path: Path,
                                                                fleet_prefix: str) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (Debian: apt-get install mosquitto)")
    broker = LocalBroker(workdir=str(tmp_path))  # not persistent: a kill -9 loses its queues
    with broker.conf.open("a") as conf:
        conf.write("max_inflight_messages 0\n")  # central holds a hole's followers unacked
    broker.start()
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(
        "store: {id: s1}\ngateway: {id: gw1}\n"
        f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 20ms, keep_delivered: 1h}}\n"
        f"mqtt: {{url: '{broker.url}', keepalive: 5, topic_layout: v2, partitions: {PARTS},"
        f" topic_prefix: {fleet_prefix}}}\n"
        "offers: {command_key: env:PG_COMMAND_KEY}\n")
    cfg = load_config(str(cfg_path), env={"PG_COMMAND_KEY": KEY})
    o = Options(brokers=(Endpoint(broker.host, broker.port),), prefix=fleet_prefix,
                partitions=PARTS, instance="r", lease_s=2.0, gap_timeout_s=60.0,
                resend_after_s=1.0, keepalive=5, command_key=KEY.encode())
    db = await open_db(f"sqlite:///{tmp_path}/central.db")
    svc = Service(cfg, RunOptions(mode=Mode.LIVE), [Idle()])
    task = asyncio.create_task(svc.run())
    sent: set[int] = set()

    def load(first: int, rounds: int) -> None:
        rt = svc.runtime
        assert rt is not None
        msgs = rt.core.pipeline.inject([GatewayStats(time=time.time(), gateway="gw1",
                                                     counts={"i": first + k})
                                        for k in range(rounds)])
        sent.update(m.seq for m in msgs)
        rt.writer.add(msgs)

    try:
        assert await until(lambda: svc.runtime is not None and svc.runtime.publisher
                           is not None and svc.runtime.publisher.connected)
        rt = svc.runtime
        assert rt is not None and rt.publisher is not None
        publisher = rt.publisher

        async def delivered() -> bool:
            # The writer commits `load`'s messages in batches: wait for that first, or the
            # outbox may still be empty and `flush` return before they were even stored
            # (then the broker is killed with nothing to lose, and nothing is resent).
            await rt.writer.drained()
            return await publisher.flush(30)
        async with consumer(o, db) as a:
            await all_consuming(a, PARTS)
            for i in range(10):
                load(i * 50, 50)
                await asyncio.sleep(0.02)
            assert await delivered()
        # No consumer: the broker queues for the partition sessions, acknowledges the
        # gateway (which deletes), and then dies with the queue: a certain loss.
        for i in range(10, 15):
            load(i * 50, 50)
        assert await delivered()
        broker.kill()
        await asyncio.sleep(0.3)
        broker.start()
        async with consumer(o, db) as a:
            await all_consuming(a, PARTS)
            for i in range(15, 30):
                load(i * 50, 50)
                await asyncio.sleep(0.02)
            assert await delivered()
            stored: set[int] = set()
            results: list[object] = []
            for _ in range(300):  # the resend round trip: hole seen, asked, re-queued, stored
                stored = {int(r[0]) for r in await db.fetch("SELECT seq FROM events")}
                # The command's result follows the re-queued events: wait for it too.
                results = list(await db.fetch("SELECT data FROM events WHERE type ="
                                              " 'presence.command.result'"))
                if sent <= stored and a.held() == 0 and results:
                    break
                await asyncio.sleep(0.1)
        assert sent <= stored, f"{len(sent - stored)} events never stored"
        report = await db.report()
        seqs = (await ordered_per_gateway(db))["s1/gw1"]
    finally:
        svc.stop_event.set()
        await task
        await db.close()
        broker.close()
    assert results, "nothing was lost and resent: the test did not test anything"
    assert report["gaps"] == 0 and report["holes_skipped"] == 0
    assert len(seqs) == len(set(seqs)), "an event applied twice"
    assert seqs == sorted(seqs), "applied out of order"
