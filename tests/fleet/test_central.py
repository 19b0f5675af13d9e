"""The central consumer against the real 3-node NATS cluster, into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from presence_gateway.central.consumer import Coordinator, Options
from presence_gateway.central.db import CentralDb, open_db
from presence_gateway.core.config import Endpoint
from tests.fleet.servers import NatsCluster
from tests.fleet.sim import SimGateway, stream

PARTS = 4


def endpoints(nats: NatsCluster) -> list[Endpoint]:
    return [Endpoint("127.0.0.1", n.mqtt_port) for n in nats.nodes]


def opts(nats: NatsCluster, prefix: str, instance: str, **kw: float) -> Options:
    return Options(brokers=tuple(endpoints(nats)), prefix=prefix, partitions=PARTS,
                   instance=instance, lease_s=kw.get("lease_s", 2.0),
                   gap_timeout_s=kw.get("gap_timeout_s", 8.0), keepalive=5)


@contextlib.asynccontextmanager
async def consumer(o: Options, db: CentralDb) -> AsyncIterator[Coordinator]:
    c = Coordinator(o, db)
    task = asyncio.create_task(c.run())
    try:
        yield c
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def all_consuming(c: Coordinator, parts: int = PARTS, within_s: float = 30) -> None:
    """Until this coordinator holds `parts` partitions, each with a subscribed session."""
    for _ in range(int(within_s / 0.05)):
        if len(c.workers) >= parts and all(w.connected.is_set() for w, _ in c.workers.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(c.workers)} partitions held, not all consuming")


async def wait_events(db: CentralDb, n: int, within_s: float) -> int:
    got = 0
    for _ in range(int(within_s / 0.2)):
        got = int(await db.fetchval("SELECT count(*) FROM events") or 0)
        if got >= n:
            break
        await asyncio.sleep(0.2)
    return got


async def wait_consuming(db_url: str, parts: int, within_s: float) -> None:
    """Until every partition has a subscribed session: only then is nothing published lost
    (a partition's session is created by its first consumer; see docs/fleet.md)."""
    for _ in range(int(within_s / 0.2)):
        with contextlib.suppress(Exception):
            db = await open_db(db_url)
            try:
                report = await db.report()
            finally:
                await db.close()
            if sum(p["consuming"] for p in report["partitions"].values()) >= parts:
                return
        await asyncio.sleep(0.2)
    raise AssertionError("central did not subscribe every partition in time")


async def ordered_per_gateway(db: CentralDb) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = {}
    for store, gw, seq in await db.fetch(
            "SELECT store, gateway, seq FROM events ORDER BY applied"):
        seqs.setdefault(f"{store}/{gw}", []).append(int(seq))
    return seqs


async def run_fleet(nats: NatsCluster, prefix: str, tmp_path: Path, db_url: str) -> None:
    gws = [SimGateway(f"s{i}", "gw1", prefix=prefix, servers=endpoints(nats),
                      workdir=tmp_path, partitions=PARTS) for i in range(4)]
    db = await open_db(db_url)
    try:
        async with consumer(opts(nats, prefix, "a"), db) as a:
            await all_consuming(a)
            for g in gws:
                await g.start()
                await g.emit(stream(g.store, g.gateway, 20))
            total = sum(len(g.committed) for g in gws)
            if await wait_events(db, total, 30) != total:
                stored = {str(r[0]) for r in await db.fetch("SELECT id FROM events")}
                missing = [(g.store, g.committed.index(i) + 1) for g in gws
                           for i in g.committed if i not in stored]
                raise AssertionError(f"missing {missing}; held {a.held()}")
            report = await db.report()
            assert report["events"] == total and report["gaps"] == 0
            assert report["duplicates"] >= 0
            for g in gws:
                entry = report["gateways"][f"{g.store}/{g.gateway}"]
                assert entry["last_sequence"] == len(g.committed)
                assert entry["status"] == "online" and entry["outbox_depth"] == 0, report
            for key, seqs in (await ordered_per_gateway(db)).items():
                assert seqs == list(range(1, len(seqs) + 1)), key
            stored = {str(r[0]) for r in await db.fetch("SELECT id FROM events")}
            assert stored == {i for g in gws for i in g.committed}
            assert int(await db.fetchval("SELECT count(*) FROM visits") or 0) == 4 * 20 * 2
            assert int(await db.fetchval("SELECT count(*) FROM links") or 0) == 4 * 5
    finally:
        for g in gws:
            await g.stop()
        await db.close()


async def test_central_into_sqlite(nats: NatsCluster, fleet_prefix: str, tmp_path: Path) -> None:
    await run_fleet(nats, fleet_prefix, tmp_path, f"sqlite:///{tmp_path}/central.db")


async def test_central_into_postgres(nats: NatsCluster, fleet_prefix: str, tmp_path: Path,
                                     pg_url: str) -> None:
    await run_fleet(nats, fleet_prefix, tmp_path, pg_url)


async def test_cli_run_until_sigterm_then_report(nats: NatsCluster, fleet_prefix: str,
                                                 tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    db_url = f"sqlite:///{tmp_path}/cli.db"
    args = [sys.executable, "-m", "presence_gateway.cli.main", "central", "run", "--db", db_url,
            "--prefix", fleet_prefix, "--partitions", str(PARTS), "--lease", "2"]
    for n in nats.nodes:
        args += ["--broker", n.mqtt_url]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)  # noqa: ASYNC220 (returns at once)
    await wait_consuming(db_url, PARTS, 30)
    g = SimGateway("cli-store", "gw9", prefix=fleet_prefix, servers=endpoints(nats),
                   workdir=tmp_path, partitions=PARTS)
    try:
        await g.start()
        await g.emit(stream(g.store, g.gateway, 10))
        db = await open_db(db_url)
        try:
            assert await wait_events(db, len(g.committed), 30) == len(g.committed)
        finally:
            await db.close()
    finally:
        await g.stop()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "presence_gateway.cli.main", "central", "report",
                         "--db", db_url, "--json"], capture_output=True, check=True)
    report = json.loads(out.stdout)
    assert report["events"] == len(g.committed) and report["gaps"] == 0
    assert report["duplicates"] >= 0
    entry = report["gateways"]["cli-store/gw9"]
    assert entry["last_sequence"] == len(g.committed) and entry["status"] == "offline"


async def test_central_on_a_single_mosquitto(mosquitto: Any, fleet_prefix: str,
                                             tmp_path: Path) -> None:
    """The store-broker default works too: partition sessions persist in Mosquitto."""
    broker = mosquitto(persistent=True)
    ep = Endpoint(broker.host, broker.port)
    o = Options(brokers=(ep,), prefix=fleet_prefix, partitions=PARTS, instance="m",
                lease_s=2.0, gap_timeout_s=5.0, keepalive=5)
    db = await open_db(f"sqlite:///{tmp_path}/m.db")
    g = SimGateway("m1", "gw1", prefix=fleet_prefix, servers=[ep], workdir=tmp_path,
                   partitions=PARTS)
    try:
        async with consumer(o, db) as a:
            await all_consuming(a)
            await g.start()
            await g.emit(stream(g.store, g.gateway, 15))
            assert await wait_events(db, len(g.committed), 20) == len(g.committed)
        # Consumers gone: the sessions keep queueing; the next consumer gets it all.
        more = stream(g.store, g.gateway, 30)[len(g.committed):]
        await g.emit(more)
        assert g.publisher is not None and await g.publisher.flush(10)
        async with consumer(replace(o, instance="m2"), db):
            assert await wait_events(db, len(g.committed), 20) == len(g.committed)
        report = await db.report()
        assert report["gaps"] == 0 and report["events"] == len(g.committed)
    finally:
        await g.stop()
        await db.close()


async def test_a_qos0_message_in_the_partition_does_not_cost_the_session(
        mosquitto: Any, fleet_prefix: str, tmp_path: Path) -> None:
    """A gateway's peer sync (QoS 0) lands under the consumer's partition subscription: it
    must not be acknowledged (a PUBACK for packet id 0 is a protocol error: Mosquitto dropped
    the session every 5 s, and a hole's resend never completed)."""
    from paho.mqtt.client import Client as Paho
    from paho.mqtt.enums import CallbackAPIVersion

    from presence_gateway.core.envelope import partition_of

    broker = mosquitto()
    o = Options(brokers=(Endpoint(broker.host, broker.port),), prefix=fleet_prefix,
                partitions=1, instance="q", lease_s=2.0, gap_timeout_s=5.0, keepalive=5)
    db = await open_db(f"sqlite:///{tmp_path}/q.db")
    part = partition_of("s1", 1)
    try:
        async with consumer(o, db) as a:
            await all_consuming(a, 1)
            sender = Paho(CallbackAPIVersion.VERSION2)
            sender.connect(broker.host, broker.port)
            sender.loop_start()
            topic = f"{fleet_prefix}/v2/{part}/s1/sync/gw1"
            for _ in range(3):
                sender.publish(topic, b"{}", qos=0).wait_for_publish(5)
            sender.loop_stop()
            sender.disconnect()
            await asyncio.sleep(1.5)
            assert a.counters.sessions == 1, "the broker dropped the consumer's session"
            assert a.counters.unusable == 3
    finally:
        await db.close()
