"""A day of synthetic traffic with 100k distinct pseudonymous devices: peak memory and speed.

    python -m bench.presence_memory [--devices N]

Every device arrives once during the day (evenly spread), is seen six times over five minutes
at -60..-80 dBm, and leaves; half are Wi-Fi, half BLE phones. The engine is ticked every 10 s of
capture time. Reports peak traced memory of the engine (tracemalloc, second pass), the
process's peak RSS, units held at the end, and CPU µs per observation (first pass, untraced).
"""

from __future__ import annotations

import argparse
import heapq
import resource
import time
import tracemalloc
from collections.abc import Iterator

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
    feed, tick = engine.feed, engine.tick
    next_tick = 10.0
    gen = time.process_time()
    obs_n = sum(1 for _ in traffic(n))  # the generator's own cost, subtracted below
    gen = time.process_time() - gen
    start = time.process_time()
    for obs in traffic(n):
        if obs.ts >= next_tick:
            tick(next_tick)
            next_tick += 10.0
        feed(obs)
    tick(DAY + 3600.0)
    cpu = time.process_time() - start - gen
    return obs_n, engine.units, cpu / obs_n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    n = ap.parse_args().devices
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
