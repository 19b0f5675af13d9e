"""`make bench`: every benchmark, one after another, each in its own process.

Separate processes keep one benchmark's caches and peak memory out of the next one's figures.
The tables each prints are what README's "Benchmarks" section quotes; at the end, one table of
the headline figures (goal, measured, how far from the goal: bench/summary.py), which README
quotes with the machine and the date.

    python -m bench.all [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import summary

BENCHES: list[tuple[str, list[str], list[str]]] = [
    # module, full-run arguments, --quick arguments
    ("bench.replay_cost", ["--rounds", "15", "--compiled"], ["--rounds", "3", "--compiled"]),
    ("bench.wifi_parse", [], ["--frames", "200000"]),
    ("bench.ble_decode", [], ["--n", "200000", "--theengs-n", "2000"]),
    ("bench.pipeline", ["--observations", "1000000"], ["--observations", "200000"]),
    ("bench.publish", [], ["20000"]),
    ("bench.throttle", [], []),
    ("bench.irk", [], []),
    ("bench.identity_link", [], []),
    ("bench.offers", [], []),
    ("bench.wifi_grouping", [], []),
    ("bench.presence_accuracy", [], []),
    ("bench.presence_memory", [], []),
    ("bench.presence_memory", ["--crowd", "--rounds", "3", "--compiled"],
     ["--crowd", "--rounds", "1", "--compiled"]),
    # 3-node NATS + PostgreSQL + 3 consumers: needs nats-server and postgresql installed.
    ("bench.fleet", ["--stores", "200", "--phase", "10"], ["--stores", "20", "--phase", "4"]),
    # A 30-day, 20-store central database from real replayed events; headless Chromium.
    ("bench.dashboard", [], ["--stores", "5", "--days", "7", "--rounds", "3"]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    ap.add_argument("only", nargs="*", help="module names to run (default: all)")
    args = ap.parse_args(argv)
    failed = []
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        figures = Path(tmp) / "summary.jsonl"
        env = {**os.environ, summary.ENV: str(figures)}
        for module, full, quick in BENCHES:
            args_ = quick if args.quick else full
            name = " ".join([module, *args_])
            if args.only and module not in args.only and module.split(".")[-1] not in args.only:
                continue
            cmd = [sys.executable, "-m", module, *args_]
            print(f"\n## {name}\n", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call(cmd, env=env)
            print(f"\n({name}: exit {rc}, {time.perf_counter() - t0:.0f} s)", flush=True)
            if rc != 0:
                failed.append(name)
        print(f"\n## Summary ({time.strftime('%Y-%m-%d')})\n")
        print(summary.table(figures))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
