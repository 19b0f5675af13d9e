"""Whole-pipeline benchmark: >= 1M observations from real captures into a local Mosquitto.

Builds the input by repeating real Wi-Fi and BLE captures with shifted times and addresses
(each copy is a new population of devices), then runs the real service: drivers' sink ->
privacy boundary -> pipeline -> SQLite outbox -> paho publisher -> Mosquitto. Prints
observations/s, CPU µs per observation (the whole process: parsing is done beforehand and
reported separately by bench.wifi_parse / bench.ble_decode), events/s published and
acknowledged, and peak memory.

    python -m bench.pipeline [--observations 1000000]
    python -m bench.pipeline --rounds 3 [--baseline SITE]

With `--rounds` every run is a fresh process and the figures are medians with their range;
`--baseline SITE` interleaves runs of another tree (a directory holding a `presence_gateway`
package, e.g. an export of main) with this one, for a paired before/after on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.cli.demo import demo_captures
from presence_gateway.core.config import load_config, mqtt_from_url
from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.registry import create, recording
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "captures"


def source_captures() -> list[str]:
    extra = [SHARED / "wifi/brno_sc6-61/position_1_sc6-61_2023-02-28_anonymized.pcap",
             SHARED / "ble/ice9_hackrf_boston/take_3__adv38_2.pcap"]
    return demo_captures() + [str(p) for p in extra if p.exists()]


class _Collect:
    def __init__(self) -> None:
        self.items: list[Sighting] = []

    def offer(self, s: Sighting) -> None:
        self.items.append(s)

    async def put_many(self, items: Iterable[Sighting]) -> None:
        self.items.extend(items)

    def reject(self, r: Rejection) -> None:
        pass


def load_sightings(paths: list[str]) -> list[Sighting]:
    sink = _Collect()
    out: list[Sighting] = []
    for p in paths:  # captures from different years all start at t = 0
        sink.items = []
        asyncio.run(go_one(p, sink))
        if sink.items:
            t0 = min(s.ts for s in sink.items)
            out.extend(dataclasses.replace(s, ts=s.ts - t0) for s in sink.items)
    return out


async def go_one(path: str, sink: _Collect) -> None:
    await create(recording(path, "bench")).run(sink)


class Repeater:
    """Replays the base sightings `copies` times, each copy shifted in time and address."""

    name = "repeater"

    def __init__(self, base: list[Sighting], total: int) -> None:
        self.base = sorted(base, key=lambda s: s.ts)
        self.total = total
        self.span = self.base[-1].ts - self.base[0].ts + 600.0

    async def run(self, sink: Any) -> None:
        sent, copy = 0, 0
        t0 = self.base[0].ts
        while sent < self.total:
            shift = copy * self.span
            tag = copy.to_bytes(3, "big")
            batch: list[Sighting] = []
            for s in self.base:
                addr = s.address[:3] + bytes(a ^ b for a, b in zip(s.address[3:], tag,
                                                                    strict=True))
                batch.append(dataclasses.replace(s, ts=s.ts - t0 + 1.7e9 + shift, address=addr))
                if len(batch) == 1024:
                    await sink.put_many(batch)
                    sent += len(batch)
                    batch = []
                    if sent >= self.total:
                        return
            if batch:
                await sink.put_many(batch)
                sent += len(batch)
            copy += 1


class _Null:
    def offer(self, s: Sighting) -> None:
        pass

    async def put_many(self, items: Iterable[Sighting]) -> None:
        for _ in items:
            pass

    def reject(self, r: Rejection) -> None:
        pass


def _generator_cost(base: list[Sighting], total: int) -> float:
    cpu0 = time.process_time()
    asyncio.run(Repeater(base, total).run(_Null()))
    return time.process_time() - cpu0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=0, help="fresh processes, medians")
    ap.add_argument("--baseline", help="site directory of the tree to compare against")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rounds or args.baseline:
        return paired(args.observations, max(args.rounds, 1), args.baseline)
    base = load_sightings(source_captures())
    print(f"base: {len(base)} real sightings from {len(source_captures())} captures; "
          f"replaying {args.observations:,} observations", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(workdir=tmp) as broker:
        cfg = load_config(None)
        cfg = dataclasses.replace(cfg, mqtt=mqtt_from_url(broker.url, cfg.mqtt),
                                  storage=dataclasses.replace(cfg.storage,
                                                              path=f"{tmp}/bench.db"))
        # The input generator's own cost (copying sightings with new times and addresses) is
        # measured on its own and subtracted: it stands in for the radios' parsers.
        gen_cpu = _generator_cost(base, args.observations)
        svc = Service(cfg, RunOptions(mode=Mode.REPLAY, flush_timeout_s=600),
                      [Repeater(base, args.observations)])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        summary = asyncio.run(svc.run())
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0 - gen_cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = summary.observations
    rows = [
        ("observations", f"{n:,}"),
        ("wall time", f"{wall:.1f} s"),
        ("observations/s", f"{n / wall:,.0f}"),
        ("CPU per observation (whole process, input generation excluded)",
         f"{cpu / n * 1e6:.2f} µs"),
        ("  of which input generation (excluded)", f"{gen_cpu / n * 1e6:.2f} µs"),
        ("events per observation", f"{summary.published / n:.3f}"),
        ("events published", f"{summary.published:,}"),
        ("events acknowledged", f"{summary.acked:,}"),
        ("events/s acknowledged", f"{summary.acked / wall:,.0f}"),
        ("outbox left", f"{summary.outbox_depth}"),
        ("peak RSS", f"{peak_mb:.0f} MB"),
    ]
    if args.json:
        print(json.dumps({"us_per_obs": cpu / n * 1e6, "obs_per_s": n / wall,
                          "acked_per_s": summary.acked / wall, "rss_mb": peak_mb,
                          "events_per_obs": summary.published / n}))
        return 0
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


def paired(n: int, rounds: int, baseline: str | None) -> int:
    trees = {"this tree": None} if baseline is None else {"baseline": baseline,
                                                          "this tree": None}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    root = Path(__file__).resolve().parents[1]
    for r in range(rounds):  # interleaved: a slow spell of the machine hits both trees alike
        for name, site in trees.items():
            env = dict(os.environ)
            if site is not None:
                env["PYTHONPATH"] = site
            for _attempt in range(2):  # one retry: a broker start can fail on a busy machine
                res = subprocess.run([sys.executable, "-m", "bench.pipeline", "--json",
                                      "--observations", str(n)], cwd=root, env=env,
                                     capture_output=True, text=True)
                if res.returncode == 0:
                    runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
                    break
                print(f"{name} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
            print(f"round {r + 1}: {name} done", file=sys.stderr)
    keys = [("us_per_obs", "CPU µs per observation", 2), ("obs_per_s", "observations/s", 0),
            ("acked_per_s", "events/s acknowledged", 0), ("rss_mb", "peak RSS (MB)", 0),
            ("events_per_obs", "events per observation", 3)]
    print("| measure | " + " | ".join(f"{t} median [range]" for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for key, label, digits in keys:
        cells = []
        for name in trees:
            xs = [x[key] for x in runs[name]] or [float("nan")]
            cells.append(f"{statistics.median(xs):,.{digits}f} "
                         f"[{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"({n:,} observations, {rounds} rounds each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
