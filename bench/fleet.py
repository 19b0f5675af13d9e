"""Fleet benchmark: simulated stores -> 3-node NATS cluster -> 3 `central run` -> PostgreSQL.

Each store is a real outbox + publisher (tests/fleet/sim.py) replaying a recorded-shape day;
all stores share this process's event loop. Three phases of equal length: steady, then one
broker node and one consumer killed, then both restarted. Reported per phase: events/s
stored, p50/p99 latency from outbox commit to database row, and CPU per event of the store
side (this process), the consumers and the brokers (from /proc).

    python -m bench.fleet [--stores 200] [--phase 10] [--rate 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from presence_gateway.central.db import open_db
from presence_gateway.core.config import Endpoint
from tests.fleet.servers import NatsCluster, Postgres, find_nats, find_postgres
from tests.fleet.sim import SimGateway, stream

PARTS = 16
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu_s(pid: int) -> float:
    """CPU of a process and its live children (PostgreSQL: postmaster + backends)."""
    total = cpu_s(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                total += cpu_s(int(entry.name))
    return total


def central(cluster: NatsCluster, db_url: str, name: str, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "presence_gateway.cli.main", "central", "run", "--db",
            db_url, "--prefix", "bench", "--partitions", str(PARTS), "--lease", "3",
            "--gap-timeout", "15", "--instance", name]
    for n in cluster.nodes:
        args += ["--broker", n.mqtt_url]
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


async def wait_consuming(db_url: str) -> None:
    db = await open_db(db_url)
    try:
        for _ in range(300):
            report = await db.report()
            if sum(p["consuming"] for p in report["partitions"].values()) >= PARTS:
                return
            await asyncio.sleep(0.2)
    finally:
        await db.close()
    raise RuntimeError("consumers did not subscribe every partition")


async def run(stores: int, phase_s: float, rate: float, work: Path) -> None:
    cluster = NatsCluster(work / "nats")
    cluster.start()
    pg = Postgres(work / "pg")
    pg.start()
    db_url = pg.url
    log = work / "central.log"
    consumers = {n: central(cluster, db_url, n, log) for n in ("c1", "c2", "c3")}
    gws = [SimGateway(f"s{i:04d}", "gw1", prefix="bench", workdir=work, partitions=PARTS,
                      servers=[Endpoint("127.0.0.1", n.mqtt_port) for n in cluster.nodes])
           for i in range(stores)]
    try:
        await wait_consuming(db_url)
        for g in gws:
            await g.start()
        day = stream("x", "gw1", 10_000)
        visit = 3  # events per visit-sized batch, on average
        cursor = 0
        phases: list[tuple[str, float, float]] = []
        cpu0 = {"stores": time.process_time(),
                "consumers": sum(cpu_s(p.pid) for p in consumers.values()),
                "brokers": sum(cpu_s(n.proc.pid) for n in cluster.nodes if n.proc),
                "database": tree_cpu_s(pg.proc.pid) if pg.proc else 0.0}
        t_start = time.time()
        for name in ("steady", "node+consumer killed", "restarted"):
            t0 = time.time()
            if name == "node+consumer killed":
                cluster.nodes[1].kill()
                consumers["c2"].kill()
            if name == "restarted":
                cluster.nodes[1].start()
                consumers["c2"] = central(cluster, db_url, "c2", log)
            interval = 1.0 / rate
            while time.time() - t0 < phase_s:
                tick = time.time()
                for g in gws:  # each store: one visit's events per interval
                    batch = [dataclasses.replace(e, time=tick)
                             for e in day[cursor:cursor + visit]]
                    await g.emit(batch)
                cursor = (cursor + visit) % (len(day) - visit)
                await asyncio.sleep(max(0.0, interval - (time.time() - tick)))
            phases.append((name, t0, time.time()))
        committed = {i: t for g in gws for i, t in g.commit_times.items()}
        for g in gws:
            assert g.publisher is not None
            await g.publisher.flush(120)
        db = await open_db(db_url)
        try:
            rows: list[tuple[str, float]] = []
            for _ in range(600):
                rows = [(str(r[0]), float(r[1])) for r in
                        await db.fetch("SELECT id, received FROM events")]
                if len(rows) >= len(committed):
                    break
                await asyncio.sleep(0.5)
            report = await db.report()
        finally:
            await db.close()
        t_end = max(r for _, r in rows)
        cpu1 = {"stores": time.process_time(),
                "consumers": sum(cpu_s(p.pid) for p in consumers.values()),
                "brokers": sum(cpu_s(n.proc.pid) for n in cluster.nodes if n.proc),
                "database": tree_cpu_s(pg.proc.pid) if pg.proc else 0.0}
        _table(stores, phases, committed, rows, report, cpu0, cpu1, t_end - t_start)
    finally:
        for g in gws:
            await g.stop()
        for p in consumers.values():
            p.terminate()
            p.wait(20)
        cluster.close()
        pg.stop()


def _table(stores: int, phases: list[tuple[str, float, float]], committed: dict[str, float],
           rows: list[tuple[str, float]], report: dict[str, object], cpu0: dict[str, float],
           cpu1: dict[str, float], wall: float) -> None:
    stored = dict(rows)
    print(f"stores: {stores}, events committed: {len(committed)}, stored: {len(stored)},"
          f" lost: {len(set(committed) - set(stored))}, duplicates dropped:"
          f" {report['duplicates']}, gaps: {report['gaps']}")
    print("\n| phase | events | events/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for name, t0, t1 in phases:
        lat = sorted((stored[i] - t) * 1000 for i, t in committed.items()
                     if t0 <= t < t1 and i in stored)
        if not lat:
            continue
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"| {name} | {len(lat)} | {len(lat) / (t1 - t0):.0f} | {p50:.0f} | {p99:.0f} |")
    n = max(1, len(stored))
    print("\n| side | CPU s | CPU µs/event |\n|---|---:|---:|")
    for side in ("stores", "consumers", "brokers", "database"):
        used = cpu1[side] - cpu0[side]
        print(f"| {side} | {used:.1f} | {used / n * 1e6:.0f} |")
    print(f"\nwall: {wall:.1f} s (incl. drain)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stores", type=int, default=200)
    ap.add_argument("--phase", type=float, default=10.0, help="seconds per phase")
    ap.add_argument("--rate", type=float, default=1.0, help="visits per store per second")
    args = ap.parse_args(argv)
    if find_nats() is None or find_postgres() is None:
        print("needs nats-server and postgresql (Debian packages)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as d:
        work = Path(d)
        os.chmod(work, 0o755)
        asyncio.run(run(args.stores, args.phase, args.rate, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
