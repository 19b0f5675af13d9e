"""Whole-pipeline benchmark: >= 1M frames and adverts of real captures into a local Mosquitto.

Writes synthetic captures into a private temporary directory: the real Wi-Fi captures (the
bundled demo files and the Brno 2023-02-28 day) repeated, each copy shifted in time with the
transmitter addresses rewritten (a new population of phones per copy), and the real BLE air
captures (the bundled Boston take and ../shared's take_3) repeated, shifted in time (the same
beacons and phones coming back). Then runs the real service on them, as `replay` does:
pcap reader -> parsers -> throttle -> privacy boundary -> pipeline -> SQLite outbox -> paho
publisher -> Mosquitto. Prints frames/s, CPU µs per frame (everything the process does,
parsing and reading included; the start-up before the service runs is not counted), events/s
published and acknowledged, and peak memory.

    python -m bench.pipeline [--observations 1000000]
    python -m bench.pipeline --rounds 3 [--baseline SITE]

With `--rounds` every run is a fresh process and the figures are medians with their range;
`--baseline SITE` interleaves runs of another tree (a directory holding a `presence_gateway`
package, e.g. an export of main) with this one, for a paired before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.cli.demo import demo_captures
from presence_gateway.core.config import load_config, mqtt_from_url
from presence_gateway.drivers.pcap_records import iter_records
from presence_gateway.drivers.registry import replay_settings
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "captures"
_RADIOTAP = 127


def source_captures() -> list[str]:
    extra = [SHARED / "wifi/brno_sc6-61/position_1_sc6-61_2023-02-28_anonymized.pcap",
             SHARED / "ble/ice9_hackrf_boston/take_3__adv38_2.pcap"]
    return [p for p in demo_captures() if p.endswith(".pcap")] + \
        [str(p) for p in extra if p.exists()]


def synthesize(paths: list[str], total: int, folder: Path) -> tuple[list[str], int]:
    """Wi-Fi and BLE pcaps in `folder` holding `total` records together, in the sources'
    proportions: copy k of every record is shifted by k spans of its capture (+10 min); Wi-Fi
    copies XOR k into the transmitter address's low octets (the OUI and LA bit stay). BLE
    addresses are left as they are (rewriting them would break the link layer's CRC)."""
    base: dict[int, list[tuple[float, bytes]]] = {}
    for p in paths:
        read = list(iter_records(p))
        if not read:
            continue
        t0 = read[0][0]
        for ts, lt, data in read:  # captures of different years all start at t = 0
            base.setdefault(lt & 0xFFFF, []).append((ts - t0, data))
    n_all = sum(len(v) for v in base.values())
    out: list[str] = []
    written = 0
    for lt, recs in sorted(base.items()):
        recs.sort(key=lambda r: r[0])
        want = round(total * len(recs) / n_all)
        span = recs[-1][0] - recs[0][0] + 600.0
        path = folder / f"synthetic-{lt}.pcap"
        head, rec = struct.Struct("<IHHiIII"), struct.Struct("<IIII")
        with path.open("wb") as f:
            f.write(head.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, lt))
            k = n = 0
            while n < want:
                tag = k.to_bytes(4, "big")
                for ts, data in recs:
                    frame = data
                    if lt == _RADIOTAP and len(data) >= 4:  # Wi-Fi behind RadioTap
                        hlen = data[2] | data[3] << 8
                        if len(data) >= hlen + 16:
                            b = bytearray(data)
                            for i in range(3):  # the address's last three octets
                                b[hlen + 13 + i] ^= tag[1 + i]
                            frame = bytes(b)
                    t = 1.7e9 + ts + k * span
                    f.write(rec.pack(int(t), int(t % 1 * 1e6), len(frame), len(frame)))
                    f.write(frame)
                    n += 1
                    if n >= want:
                        break
                k += 1
        written += n
        out.append(str(path))
    return out, written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--observations", type=int, default=1_000_000,
                    help="frames and adverts in the synthetic captures")
    ap.add_argument("--rounds", type=int, default=0, help="fresh processes, medians")
    ap.add_argument("--baseline", help="site directory of the tree to compare against")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rounds or args.baseline:
        return paired(args.observations, max(args.rounds, 1), args.baseline)
    with tempfile.TemporaryDirectory(prefix="pg-pipeline-") as tmp, \
            LocalBroker(workdir=tmp) as broker:
        captures, records = synthesize(source_captures(), args.observations, Path(tmp))
        print(f"{records:,} records in {len(captures)} synthetic captures from "
              f"{len(source_captures())} real ones", file=sys.stderr)
        cfg = load_config(None)
        cfg = dataclasses.replace(cfg, mqtt=mqtt_from_url(broker.url, cfg.mqtt),
                                  drivers=replay_settings(captures),
                                  storage=dataclasses.replace(cfg.storage,
                                                              path=f"{tmp}/bench.db"))
        svc = Service(cfg, RunOptions(mode=Mode.REPLAY, flush_timeout_s=600))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        summary = asyncio.run(svc.run())
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    frames = summary.observations + summary.throttled
    rows = [
        ("frames and adverts parsed", f"{frames:,}"),
        ("  of which repeats throttled", f"{summary.throttled:,}"),
        ("wall time", f"{wall:.1f} s"),
        ("frames/s", f"{frames / wall:,.0f}"),
        ("CPU per frame (whole process: reading, parsing, core, outbox, publisher)",
         f"{cpu / frames * 1e6:.2f} µs"),
        ("events per frame", f"{summary.published / frames:.3f}"),
        ("events published", f"{summary.published:,}"),
        ("events acknowledged", f"{summary.acked:,}"),
        ("events/s acknowledged", f"{summary.acked / wall:,.0f}"),
        ("outbox left", f"{summary.outbox_depth}"),
        ("peak RSS", f"{peak_mb:.0f} MB"),
    ]
    if args.json:
        print(json.dumps({"us_per_obs": cpu / frames * 1e6, "obs_per_s": frames / wall,
                          "acked_per_s": summary.acked / wall, "rss_mb": peak_mb,
                          "events_per_obs": summary.published / frames}))
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
    keys = [("us_per_obs", "CPU µs per frame", 2), ("obs_per_s", "frames/s", 0),
            ("acked_per_s", "events/s acknowledged", 0), ("rss_mb", "peak RSS (MB)", 0),
            ("events_per_obs", "events per frame", 3)]
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
