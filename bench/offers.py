"""Offer rules cost per observation: the whole pipeline with 0, 50 and 500 rules.

    python -m bench.offers [--visits 600] [--interval 2] [--repeat 3]

A synthetic store day (Monday from 09:00 Europe/Berlin): `--visits` phones arrive over six
hours and stay 3-25 minutes, each advertising every `--interval` seconds; a third carry the
retailer app's iBeacon and are registered customers (consent `offers`, tier gold/silver), the
rest are anonymous Apple phones. The sightings go through the gateway `offers simulate`
runs (runtime/simulate.py: the one builder; channel with throttle, privacy boundary + identity
resolver -> presence engine -> linker -> offer engine -> envelope -> writer).
Rules all target the zone, with dwell conditions of 0-8 minutes, segments, hours and caps, so
every linked visit evaluates every rule at its state changes.

The offer engine runs only on state changes (zone entered, dwell marks, link), so the cost per
observation should barely move between 0 and 500 rules; the table shows CPU µs per observation
(best of --repeat runs of the whole simulated gateway, its start and scratch database
included; input built beforehand), offer-engine evaluations and firings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from presence_gateway.core.config import load_config
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.model import AddressKind, Radio, Sighting
from presence_gateway.core.offers.rules import parse_rules
from presence_gateway.drivers.base import Sink
from presence_gateway.runtime.core import pseudonymizer_for
from presence_gateway.runtime.simulate import SimulationResult, simulate

APP_UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
TZ = "Europe/Berlin"
T0 = dt.datetime(2025, 6, 2, 9, 0, tzinfo=ZoneInfo(TZ)).timestamp()


def make_rules(n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = ["offers:"]
    for i in range(n):
        dwell = rng.choice(["0s", "1m", "2m", "3m", "5m", "8m"])
        tiers = rng.choice(["[gold]", "[gold, silver]", "[silver]"])
        lines += [f"  - id: rule-{i:03d}", f"    description: synthetic rule {i}",
                  "    when:", "      zone: store", f"      dwell_at_least: {dwell}",
                  f"      segment: {{tier: {tiers}}}", '      hours: "08:00-22:00"',
                  "    limits: {cooldown: 1h, per_customer: {day: 1}, global_per_hour: 1000,"
                  " max_per_visit: 3}",
                  f"    payload: {{campaign: C{i:03d}}}"]
    return "\n".join(lines) + "\n" if n else "offers: []\n"


def make_day(visits: int, interval: float, seed: int = 1) -> tuple[list[Sighting], str]:
    """Sightings in time order and the registry import (CSV) of the app users."""
    rng = random.Random(seed)
    out: list[Sighting] = []
    csv = ["customer_id,kind,value,consent,segments"]
    for v in range(visits):
        start = T0 + rng.uniform(0, 6 * 3600)
        stay = rng.uniform(180, 1500)
        address = bytes([0xC0 | (v >> 16) & 0x3F, (v >> 8) & 0xFF, v & 0xFF, 1, 2, 3])
        registered = v % 3 == 0
        hints: tuple[str, ...] = ()
        kind = "apple"
        if registered:
            hints, kind = (f"ibeacon:{APP_UUID}/1/{v}",), "ibeacon"
            tier = "gold" if v % 2 else "silver"
            csv.append(f"c{v},ibeacon,{APP_UUID}/1/{v},offers personalization,tier={tier}")
        t = start
        while t < start + stay:
            out.append(Sighting(t, Radio.BLE, address, AddressKind.STATIC,
                                rng.randint(-75, -55), 37, kind, identity_hints=hints))
            t += interval * rng.uniform(0.8, 1.2)
    out.sort(key=lambda s: s.ts)
    return out, "\n".join(csv) + "\n"


class _Day:
    """A recorded driver over the synthetic day (batches, as the replay readers deliver)."""

    name = "bench-day"

    def __init__(self, sightings: list[Sighting]) -> None:
        self.sightings = sightings

    async def run(self, sink: Sink) -> None:
        for i in range(0, len(self.sightings), 1024):
            await sink.put_many(self.sightings[i:i + 1024])


def run_once(rules_path: str, sightings: list[Sighting], csv: str) -> tuple[float,
                                                                            SimulationResult]:
    cfg = load_config(None)
    cfg = dataclasses.replace(cfg, timezone=TZ, offers=dataclasses.replace(
        cfg.offers, rules_path=rules_path))
    entries = parse_import(csv, "bench.csv", pseudonymizer_for(cfg).stable_hash).entries
    cpu0 = time.process_time()
    result = asyncio.run(simulate(cfg, drivers=[_Day(sightings)], entries=entries))
    return time.process_time() - cpu0, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--visits", type=int, default=600)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sightings, csv = make_day(args.visits, args.interval)
    print(f"{len(sightings):,} observations, {args.visits} visits "
          f"({csv.count(chr(10)) - 1} registered customers)", file=sys.stderr)
    rows = []
    base = None
    for n in (0, 50, 500):
        with tempfile.TemporaryDirectory() as tmp:
            rules_path = str(Path(tmp) / "rules.yaml")
            Path(rules_path).write_text(make_rules(n), encoding="utf-8")
            parse_rules(make_rules(n), rules_path, zones={"store"})  # fail early, readably
            best, result = min((run_once(rules_path, sightings, csv)
                                for _ in range(args.repeat)), key=lambda r: r[0])
        us = best / result.summary.observations * 1e6
        base = us if base is None else base
        by = result.summary.events_by_type
        changes = sum(by.get(t, 0) for t in ("presence.zone.entered", "presence.zone.dwell",
                                            "presence.identity.linked"))
        evaluated = sum(result.fired.values()) + sum(result.suppressed.values())
        rows.append((n, f"{us:.2f}", f"{us - base:+.2f}", f"{changes:,}", f"{evaluated:,}",
                     f"{sum(result.fired.values()):,}"))
    print("| rules | CPU µs / observation | vs 0 rules | state changes | rule evaluations"
          " | offers fired |\n|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
