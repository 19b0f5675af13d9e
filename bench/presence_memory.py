"""A day of synthetic traffic with 100k distinct pseudonymous devices: peak memory and speed.

    python -m bench.presence_memory [--devices N]
    python -m bench.presence_memory --crowd [--wifi] [--baseline SITE] [--rounds 3]


Every device arrives once during the day (evenly spread), is seen six times over five minutes
at -60..-80 dBm, and leaves; half are Wi-Fi, half BLE phones. The engine is ticked every 10 s of
capture time. Reports peak traced memory of the engine (tracemalloc, second pass), the
process's peak RSS, units held at the end, and CPU µs per observation (first pass, untraced).

`--crowd`: 1k / 10k / 100k devices present at once (BLE, or Wi-Fi with `--wifi`) through the
core pipeline in capture time: every device is heard for 7 min (not measured: its visit starts
and settles), then for 2 min more, 200k observations at every size (measured: the same
steady-state work per observation whatever the crowd), then all their visits end
together (`finish`, as at the end of a replay or closing time). Each size runs in a fresh
process (RSS is per process), in interleaved rounds; prints median and range of CPU µs per
observation, peak RSS while tracking and after the mass visit end, and the most messages one
call handed over; beside the mean, a typical observation: the median of the 1,024-observation
chunks' costs, which a slow spell of a shared machine (CPU time inflated by a noisy neighbour)
moves far less, and which leaves out the few chunks that hold a minute's footfall walk.
`--baseline SITE` runs the same rounds, interleaved, against another tree
(a directory holding a `presence_gateway` package, e.g. an export of main) for a paired
before/after.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from bench.compiled import TREE as COMPILED
from bench.compiled import build
from bench.summary import report
from presence_gateway.core.model import AddressKind, Kind, Observation, Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine

DAY = 86400.0


def _obs(i: int, k: int, n: int) -> Observation:
    wifi = i % 2 == 0
    return Observation(
        ts=i * DAY / n + 60.0 * k, radio=Radio.WIFI if wifi else Radio.BLE,
        device=f"{i * 2654435761 % 2**64:016x}",
        address_kind=AddressKind.PUBLIC if wifi else AddressKind.STATIC,
        rssi=-60 - (i + k) % 20, channel=6 if wifi else 37,
        kind=Kind.PROBE_REQUEST.value if wifi else Kind.APPLE.value)


def traffic(n: int) -> Iterator[Observation]:
    """Time-ordered sightings; only devices currently around are held (a small heap)."""
    heap: list[tuple[float, int, int]] = []
    for i in range(n):
        t0 = i * DAY / n
        while heap and heap[0][0] <= t0:
            _, j, k = heapq.heappop(heap)
            yield _obs(j, k, n)
            if k < 5:
                heapq.heappush(heap, (j * DAY / n + 60.0 * (k + 1), j, k + 1))
        yield _obs(i, 0, n)
        heapq.heappush(heap, (t0 + 60.0, i, 1))
    while heap:
        _, j, k = heapq.heappop(heap)
        yield _obs(j, k, n)
        if k < 5:
            heapq.heappush(heap, (j * DAY / n + 60.0 * (k + 1), j, k + 1))


def run(n: int) -> tuple[int, int, float]:
    """(observations, units left, CPU µs per observation for feed + tick)."""
    engine = PresenceEngine(PresenceSettings(), gateway_id="bench", store_id="s")
    feed = engine.feed
    next_tick = 10.0
    gen = time.process_time()
    obs_n = sum(1 for _ in traffic(n))  # the generator's own cost, subtracted below
    gen = time.process_time() - gen
    start = time.process_time()
    for obs in traffic(n):
        if obs.ts >= next_tick:
            _drain(engine, next_tick)
            next_tick += 10.0
        feed(obs)
    _drain(engine, DAY + 3600.0)
    cpu = time.process_time() - start - gen
    return obs_n, engine.tracked, cpu / obs_n * 1e6


def _drain(engine: PresenceEngine, now: float) -> None:
    engine.tick(now)
    while getattr(engine, "backlog", False):  # an older tree has no batches
        engine.tick(now)


# The crowd's timeline: every device is heard for WARMUP_S (its visit starts at its second
# sighting, 60 s in at the slowest cadence; its walk-in and zone are decided; the zone's 60 s
# and 300 s dwell marks pass), then for MEASURE_S, the measured part, in which no dwell mark
# (the next is 900 s after the zone entry) or walk-in decision falls. Both spans are the
# same capture time at every crowd size; only the cadence differs (each device is heard every
# MEASURE_S * n / total s), so every size measures the same number of observations of devices
# in the same state: the steady state, where any growth with n is the structures' and caches'.
WARMUP_S = 420.0
MEASURE_S = 120.0


def crowd_traffic(n: int, period: float, start: float, span: float,
                  wifi: bool = False) -> Iterator[Observation]:
    """n devices present at once, round robin, each heard every `period` s of capture time from
    `start` for `span` s: BLE phones, or Wi-Fi phones probing from random addresses (one
    fingerprint each, so each is a group of the grouper)."""
    dt = period / n
    first = round(start / dt)
    # One key object per device, as the pseudonymizer's cache hands the same str for the same
    # address (a fresh string per sighting would add a compare of the stored key in every
    # lookup, which the service does not pay).
    keys = [f"{i * 2654435761:016x}" for i in range(n)]
    prints = [f"fp{i}" for i in range(n)] if wifi else []
    for k in range(first, first + round(span / dt)):
        i = k % n
        device = keys[i]
        if wifi:
            yield Observation(ts=1.7e9 + k * dt, radio=Radio.WIFI, device=device,
                              address_kind=AddressKind.RANDOM, rssi=-60 - k % 20, channel=6,
                              kind=Kind.PROBE_REQUEST.value, fingerprint=prints[i])
        else:
            yield Observation(ts=1.7e9 + k * dt, radio=Radio.BLE, device=device,
                              address_kind=AddressKind.STATIC, rssi=-60 - k % 20, channel=37,
                              kind=Kind.APPLE.value)


def crowd_one(n: int, total: int, wifi: bool = False) -> dict[str, float]:
    """One size in this process: the core pipeline as the service drives it in a replay,
    under the service's garbage-collector settings (`run` and `replay` apply them after
    start-up). With CPython's defaults a full collection walks every unit about once a
    minute of this traffic, a cache miss per unit at 100k: 0.15 µs per observation there,
    0.05 at 1k (gc callbacks, measured here), a cost the service does not pay."""
    from presence_gateway.core.envelope import Envelope, Topics
    from presence_gateway.core.pipeline import Pipeline
    try:
        from presence_gateway.runtime.gctune import tune_for_service
    except ImportError:  # an older tree (--baseline): CPython's defaults, as it ran
        pass
    else:
        tune_for_service()
    engine = PresenceEngine(PresenceSettings(), gateway_id="bench", store_id="s")
    pipe = Pipeline(engine=engine, gateway_id="bench", envelope=Envelope(
        topics=Topics("presence", "s", "bench"), qos=1, next_seq=1, source="urn:bench"))
    feed = getattr(pipe, "feed_batches", None)

    chunks: list[float] = []  # µs per observation of each 1,024-observation chunk

    def phase(obs: Iterator[Observation]) -> tuple[float, int, int]:
        """CPU s, observations, messages; the messages are dropped as soon as a call returns
        them (the writer commits them). Only the feed calls are timed, not the generator."""
        cpu, count, messages = 0.0, 0, 0
        chunks.clear()
        while chunk := list(itertools.islice(obs, 1024)):
            start = time.process_time()
            for part in (feed(chunk, capture_clock=True) if feed
                         else [pipe.feed_many(chunk, capture_clock=True)]):
                messages += len(part)
            took = time.process_time() - start
            chunks.append(took / len(chunk) * 1e6)
            cpu += took
            count += len(chunk)
        return cpu, count, messages

    period = MEASURE_S * n / total
    arrive_s, arrive_n, _ = phase(crowd_traffic(n, period, 0.0, WARMUP_S, wifi))
    cpu, count, messages = phase(crowd_traffic(n, period, WARMUP_S, MEASURE_S, wifi))
    typical = statistics.median(chunks)
    tracked, rss_tracking = engine.tracked, _rss_mb()
    finish = getattr(pipe, "finish_batches", None)
    most = ended = 0
    start = time.process_time()
    for part in (finish() if finish else [pipe.finish()]):
        most = max(most, len(part))
        ended += len(part)
    end_s = time.process_time() - start
    return {"us_per_obs": cpu / count * 1e6, "typical_us": typical,
            "arrive_us": arrive_s / arrive_n * 1e6,
            "observations": count, "messages": messages, "tracked": tracked,
            "rss_tracking": rss_tracking, "rss_peak": _rss_mb(), "most_per_call": most,
            "end_messages": ended, "end_s": end_s}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def crowd(sizes: list[int], total: int, rounds: int, baseline: str | None,
          wifi: bool = False, compiled: bool = False) -> None:
    trees: dict[str, str | None] = {} if baseline is None else {"baseline": baseline}
    with tempfile.TemporaryDirectory(prefix="pg-compiled-") as tmp:
        if compiled:  # this tree's compiled build (gateway/build.py), paired with it
            trees[COMPILED] = str(build(Path(tmp)))
        trees["this tree"] = None
        _crowd(trees, sizes, total, rounds, wifi)


def _crowd(trees: dict[str, str | None], sizes: list[int], total: int, rounds: int,
           wifi: bool) -> None:
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    root = Path(__file__).resolve().parents[1]
    for r in range(rounds):  # interleaved: a slow spell of the machine hits both trees alike
        for n in sizes:
            for name, site in trees.items():
                env = dict(os.environ)
                if site is not None:
                    env["PYTHONPATH"] = site
                res = subprocess.run(
                    [sys.executable, "-m", "bench.presence_memory", "--crowd-one", str(n),
                     *(["--wifi"] if wifi else []),
                     "--observations", str(total)], cwd=root, env=env, check=True,
                    capture_output=True, text=True)
                runs.setdefault((name, n), []).append(json.loads(res.stdout))
                print(f"round {r + 1}: {name} {n:,} devices done", file=sys.stderr)
    print(f"| tree | devices | µs/obs present, median [range] ({rounds} runs) "
          "| typical chunk µs/obs | µs/obs settling (7 min) | messages while measured | tracked "
          "| peak RSS tracking (MB) | peak RSS with the mass visit end (MB) "
          "| most messages per call | CPU s of the mass end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, n), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        us = [x["us_per_obs"] for x in rs]
        med = statistics.median
        typical = [x.get("typical_us", math.nan) for x in rs]  # an older bench has none
        print(f"| {name} | {n:,} | {med(us):.2f} [{min(us):.2f}-{max(us):.2f}] "
              f"| {med(typical):.2f} "
              f"| {med([x['arrive_us'] for x in rs]):.1f} | {int(rs[0]['messages']):,} "
              f"| {int(rs[0]['tracked']):,} | {med([x['rss_tracking'] for x in rs]):.0f} "
              f"| {med([x['rss_peak'] for x in rs]):.0f} | {int(rs[0]['most_per_call']):,} "
              f"| {med([x['end_s'] for x in rs]):.1f} |")
    lo_n, hi_n = min(sizes), max(sizes)
    for name in trees:
        small, large = runs[(name, lo_n)], runs[(name, hi_n)]
        # paired: each round's largest crowd over its smallest, both run back to back
        ratios = [b["us_per_obs"] / a["us_per_obs"] for a, b in zip(small, large, strict=True)]
        print(f"{name}: {hi_n:,} vs {lo_n:,} devices: {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] the cost per observation")
        typical = [b["typical_us"] / a["typical_us"] for a, b in zip(small, large, strict=True)
                   if "typical_us" in a]
        if typical:  # the median chunk: robust to a slow spell, leaves the minute walks out
            print(f"{name}: {hi_n:,} vs {lo_n:,} devices: {statistics.median(typical):.2f}x "
                  f"[{min(typical):.2f}-{max(typical):.2f}] a typical observation (median "
                  f"of 1,024-observation chunks, the footfall walk's chunks left out)")
    for name, suffix in (("this tree", ""), (COMPILED, "_compiled")):
        if name not in trees:
            continue
        small, large = runs[(name, lo_n)], runs[(name, hi_n)]
        ratios = [b["us_per_obs"] / a["us_per_obs"] for a, b in zip(small, large, strict=True)]
        report("crowd_ratio" + suffix, statistics.median(ratios), min(ratios), max(ratios))
        for key, rs in (("crowd_us_1k", small), ("crowd_us_100k", large)):
            us = [x["us_per_obs"] for x in rs]
            report(key + suffix, statistics.median(us), min(us), max(us))
        rss = [x["rss_peak"] for x in large]
        report("crowd_rss_mb" + suffix, statistics.median(rss), min(rss), max(rss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--crowd", action="store_true", help="devices present at once, paired")
    ap.add_argument("--crowd-one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--observations", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="site directory of the tree to compare against")
    ap.add_argument("--wifi", action="store_true", help="the crowd probes from random addresses")
    ap.add_argument("--compiled", action="store_true",
                    help="also this tree's compiled build (bench/compiled.py), interleaved")
    args = ap.parse_args()
    if args.crowd_one is not None:
        print(json.dumps(crowd_one(args.crowd_one, args.observations, args.wifi)))
        return
    if args.crowd:
        crowd([int(x) for x in args.sizes.split(",")], args.observations, args.rounds,
              args.baseline, args.wifi, args.compiled)
        return
    n = args.devices
    obs_n, left, us = run(n)
    tracemalloc.start()
    run(n)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| devices | observations | units left | peak traced (MB) | peak RSS (MB) "
          "| engine CPU µs/obs |")
    print("|---|---|---|---|---|---|")
    print(f"| {n:,} | {obs_n:,} | {left} | {peak / 2**20:.1f} | {rss:.1f} | {us:.2f} |")


if __name__ == "__main__":
    main()
