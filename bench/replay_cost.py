"""Whole-process CPU per frame of `presence-gateway replay` on a real Wi-Fi day.

    python -m bench.replay_cost [--rounds 5] [--capture PCAP] [--baseline SITE] [--json]

Everything the process does for a recorded day, from reading the pcap to the last event:
parse, throttle, privacy boundary, presence, identity, offers, envelope and, with a broker,
the outbox and the publisher. Each run is a fresh `python -m presence_gateway replay` process;
its CPU (user + sys, from the kernel's accounting of the finished child) minus that of the
same command on a one-frame capture (start-up: imports, config, SQLite, the broker session)
is the day's cost, divided by the frames the parser turned into sightings (observations plus
repeats throttled: what the radio delivered). Runs are interleaved (day, one frame, day with
broker, one frame with broker) round by round, so a slow spell of the machine hits all alike;
figures are medians with their range over the rounds' paired differences. The broker is a
private Mosquitto on a free loopback port; its own CPU is not the gateway's and is not counted.
`--baseline [NAME=]SITE` (repeatable) runs the same rounds with other trees (directories
holding a `presence_gateway` package, e.g. exports of earlier commits) interleaved, for a
before/after of each lever.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.compiled import TREE as COMPILED
from bench.compiled import build
from bench.summary import report
from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.model import Sighting
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.pcap_records import iter_records

ROOT = Path(__file__).resolve().parents[1]
DAY = (ROOT.parent / "shared" / "data" / "captures" / "wifi" / "brno_sc6-61"
       / "position_1_sc6-61_2023-02-28_anonymized.pcap")
# The events count of the summary line (older trees print no throttled repeats before it).
_SUMMARY = re.compile(r"observations: \d+(?: \(\+\d+ repeats throttled\))?\s+events: (\d+)")


def one_frame(src: Path, dst: Path) -> None:
    """The capture's first record alone, in a classic pcap with the same link type."""
    ts, linktype, data = next(iter(iter_records(src)))
    with dst.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype & 0xFFFF))
        out.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(data), len(data)))
        out.write(data)


def frames_in(path: Path) -> int:
    """Records the Wi-Fi parser turns into sightings: what every tree is divided by (older
    trees print no count of the repeats they throttled)."""
    return sum(isinstance(parse_record(d, lt, ts), Sighting) for ts, lt, d in iter_records(path))


def run(args: list[str], site: str | None, workdir: str) -> tuple[float, int]:
    """CPU seconds of one replay process and the events it built."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = site
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([sys.executable, "-m", "presence_gateway", "replay",
                          "--db", os.path.join(workdir, "gw.db"), *args],
                         cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child is reaped: counted
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if res.returncode != 0:
        raise SystemExit(f"replay failed ({res.returncode}):\n{res.stderr[-2000:]}")
    m = _SUMMARY.search(res.stderr)
    if m is None:
        raise SystemExit(f"no summary in the replay's output:\n{res.stderr[-2000:]}")
    for name in os.listdir(workdir):  # a fresh outbox each run
        if name.startswith("gw.db"):
            os.unlink(os.path.join(workdir, name))
    return cpu, int(m[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--capture", type=Path, default=DAY)
    ap.add_argument("--baseline", action="append", default=[], metavar="[NAME=]SITE",
                    help="site directory of a tree to compare against (repeatable)")
    ap.add_argument("--no-broker", action="store_true", help="only `replay --no-mqtt`")
    ap.add_argument("--compiled", action="store_true",
                    help="also this tree's compiled build (bench/compiled.py), interleaved")
    ap.add_argument("--visitors", action="store_true",
                    help="also this tree with `events: {visits: visitors}`, interleaved")
    ap.add_argument("--json", action="store_true", help="one JSON line of medians at the end")
    args = ap.parse_args(argv)
    if not args.capture.exists():
        print(f"capture not found: {args.capture} (needs ../shared)", file=sys.stderr)
        return 0
    trees: dict[str, str | None] = {}
    for i, spec in enumerate(args.baseline):
        name, _, site = spec.rpartition("=")
        trees[name or ("baseline" if len(args.baseline) == 1 else f"baseline {i + 1}")] = site
    per_frame: dict[tuple[str, str], list[float]] = {}
    per_event: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pg-replay-cost-") as tmp:
        if args.compiled:
            trees[COMPILED] = str(build(Path(tmp) / "compiled"))
        trees["this tree"] = None
        if args.visitors:
            trees["this tree, events.visits: visitors"] = None
        frames = frames_in(args.capture)
        one = Path(tmp) / "one-frame.pcap"
        one_frame(args.capture, one)
        visitors = Path(tmp) / "visitors.yaml"
        visitors.write_text("events: {visits: visitors}\n")
        broker = None if args.no_broker else LocalBroker(workdir=tmp)
        if broker is not None:
            broker.start()
        try:
            modes = [("--no-mqtt", ["--no-mqtt"])]
            if broker is not None:
                modes.append(("Mosquitto", ["--mqtt", broker.url]))
            for r in range(args.rounds):
                for name, site in trees.items():
                    cpu: dict[str, float] = {}
                    for mode, extra in modes:
                        if name.endswith("visitors"):
                            extra = [*extra, "-c", str(visitors)]
                        day_cpu, events = run([*extra, str(args.capture)], site, tmp)
                        one_cpu, _ = run([*extra, str(one)], site, tmp)
                        per_frame.setdefault((name, mode), []).append(
                            (day_cpu - one_cpu) / frames * 1e6)
                        cpu[mode] = day_cpu - one_cpu
                    if "Mosquitto" in cpu:
                        per_event.setdefault(name, []).append(
                            (cpu["Mosquitto"] - cpu["--no-mqtt"]) / events * 1e6)
                print(f"round {r + 1}/{args.rounds} done ({frames:,} frames, {events:,} events)",
                      file=sys.stderr)
        finally:
            if broker is not None:
                broker.stop()
    med = statistics.median
    print(f"{args.capture.name}: {frames:,} frames; CPU µs per frame, median [range] of "
          f"{args.rounds} paired rounds")
    print("| tree | replay --no-mqtt | replay into Mosquitto | CPU µs per published event |")
    print("|---|---|---|---|")
    for name in trees:
        cells = []
        for xs in (per_frame[(name, "--no-mqtt")], per_frame.get((name, "Mosquitto")),
                   per_event.get(name)):
            cells.append("n/a" if not xs else f"{med(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, suffix in (("this tree", ""), (COMPILED, "_compiled")):
        if name not in trees:
            continue
        xs = per_frame[(name, "--no-mqtt")]
        report("replay_us" + suffix, med(xs), min(xs), max(xs))
        if (name, "Mosquitto") in per_frame:
            xs = per_frame[(name, "Mosquitto")]
            report("replay_mqtt_us" + suffix, med(xs), min(xs), max(xs))
            ev = per_event[name]
            report("event_us" + suffix, med(ev), min(ev), max(ev))
    if COMPILED in trees:  # paired round by round: robust to a slow spell of the machine
        for mode in [m for m, _ in modes]:
            ratios = [c / p for c, p in zip(per_frame[(COMPILED, mode)],
                                            per_frame[("this tree", mode)], strict=True)]
            print(f"compiled build / this tree, {mode}: {med(ratios):.2f} "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}] (paired rounds)")
    mine = per_frame[("this tree", "--no-mqtt")]
    if args.json:
        print(json.dumps({"replay_us": med(mine)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
