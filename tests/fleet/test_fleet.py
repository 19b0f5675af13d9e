"""Done-when of issue 11: 20 gateways -> 3-node NATS cluster -> 3 central consumers ->
PostgreSQL, with a broker node and a consumer killed and restarted mid-run. Every committed
event must be in the database exactly once (by id), applied in sequence order per store, and
the report must show no gap."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from presence_gateway.central.db import open_db
from tests.fleet.servers import NatsCluster
from tests.fleet.sim import SimGateway, stream
from tests.fleet.test_central import endpoints, ordered_per_gateway, wait_consuming

STORES = 20
PARTS = 8
ROUNDS = 40  # one visit per store per round (2-6 events), a round every 0.25 s


def central(nats: NatsCluster, prefix: str, db_url: str, name: str, log: Path
            ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "presence_gateway.cli.main", "central", "run", "--db",
            db_url, "--prefix", prefix, "--partitions", str(PARTS), "--lease", "2",
            "--gap-timeout", "15", "--instance", name]
    for n in nats.nodes:
        args += ["--broker", n.mqtt_url]
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.disrupts_nats
async def test_fleet_exactly_once_in_order_through_failures(
        nats: NatsCluster, fleet_prefix: str, tmp_path: Path, pg_url: str) -> None:
    logs = tmp_path / "central.log"
    consumers = {n: central(nats, fleet_prefix, pg_url, n, logs) for n in ("c1", "c2", "c3")}
    gws = [SimGateway(f"s{i:02d}", "gw1", prefix=fleet_prefix, servers=endpoints(nats),
                      workdir=tmp_path, partitions=PARTS) for i in range(STORES)]
    days = {g.store: stream(g.store, g.gateway, ROUNDS) for g in gws}
    started = time.monotonic()
    try:
        await wait_consuming(pg_url, PARTS, 30)
        for g in gws:
            await g.start()
        cursor = dict.fromkeys(days, 0)
        for rnd in range(ROUNDS):
            for g in gws:  # one visit's events (and every 5th visit footfall/occupancy/stats)
                day, i = days[g.store], cursor[g.store]
                j = next((k + 1 for k in range(i, len(day))
                          if type(day[k]).__name__ in ("VisitEnded", "GatewayStats")
                          and (k + 1 == len(day) or type(day[k + 1]).__name__
                               == "VisitStarted")), len(day))
                await g.emit(day[i:j])
                cursor[g.store] = j
            if rnd == 8:
                consumers["c2"].kill()  # SIGKILL: no clean hand-over, leases must expire
            if rnd == 14:
                nats.nodes[1].kill()
            if rnd == 26:
                nats.nodes[1].start()
            if rnd == 30:
                consumers["c2"] = central(nats, fleet_prefix, pg_url, "c2", logs)
            await asyncio.sleep(0.25)
        committed = {i for g in gws for i in g.committed}
        for g in gws:
            assert g.publisher is not None and await g.publisher.flush(30), g.store
        db = await open_db(pg_url)
        try:
            got = 0
            for _ in range(200):
                got = int(await db.fetchval("SELECT count(*) FROM events") or 0)
                if got >= len(committed):
                    break
                await asyncio.sleep(0.2)
            stored = [str(r[0]) for r in await db.fetch("SELECT id FROM events")]
            assert len(stored) == len(set(stored)), "an event applied twice"
            assert set(stored) == committed, (f"lost {len(committed - set(stored))},"
                                              f" unexpected {len(set(stored) - committed)}")
            for key, seqs in (await ordered_per_gateway(db)).items():
                assert seqs == list(range(1, len(seqs) + 1)), f"{key} out of order"
        finally:
            await db.close()
        elapsed = time.monotonic() - started
    finally:
        for g in gws:
            await g.stop()
        for p in consumers.values():
            p.send_signal(signal.SIGTERM)
        for p in consumers.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "presence_gateway.cli.main", "central", "report",
                         "--db", pg_url, "--json"], capture_output=True, check=True)
    report = json.loads(out.stdout)
    assert report["events"] == len(committed) and report["gaps"] == 0
    assert report["holes_skipped"] == 0
    assert set(report["gateways"]) == {f"{g.store}/gw1" for g in gws}
    for g in gws:
        assert report["gateways"][f"{g.store}/gw1"]["last_sequence"] == len(g.committed)
    print(f"\nfleet: {STORES} gateways, {len(committed)} events, {report['duplicates']}"
          f" duplicates dropped, {elapsed:.1f} s")
