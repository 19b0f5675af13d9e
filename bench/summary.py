"""`make bench`'s one table: each benchmark reports its headline figures here.

A benchmark calls `report(key, value, lo, hi)` for each figure the table quotes; when run by
`bench.all` (which sets PG_BENCH_SUMMARY to a file in its private temporary directory) the
figures are appended there as JSON lines, and `bench.all` prints the table at the end: goal,
measured (median [range]), and how far from the goal. Run alone, a benchmark only prints its
own tables.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "PG_BENCH_SUMMARY"

# A Pi 4 (Cortex-A72, 1.5-1.8 GHz) runs this pure-Python code ~4.5x slower than this machine's
# cores (the developers' guide's figure: 4-5x); the radios' physical limit is ~3,400
# observations/s (BLE advertising channels + one Wi-Fi monitor interface).
PI4_FACTOR = 4.5
RADIO_LIMIT_PER_S = 3400


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    figure: str
    goal: str
    unit: str
    # how a measured value compares with the goal: "max" (<= goal), "min" (>= goal)
    sense: str
    target: float


_CROWD: tuple[Row, ...] = (
    Row("crowd_ratio", "cost per observation, 100k vs 1k devices present (steady state)",
        "<= 1.5x (flat)", "x", "max", 1.5),
    Row("crowd_us_1k", "  at 1k devices", "", "µs", "none", 0.0),
    Row("crowd_us_100k", "  at 100k devices", "", "µs", "none", 0.0),
    Row("crowd_rss_mb", "peak RSS, 100k devices present, mass visit end included",
        "<= 200 MB", "MB", "max", 200.0),
)


def _compiled(row: Row) -> Row:
    """The same figure for the compiled build (`--compiled`: key + "_compiled"), indented."""
    return Row(row.key + "_compiled", "  " + row.figure.strip(), row.goal, row.unit,
               row.sense, row.target)


ROWS: tuple[Row, ...] = (
    Row("replay_us", "whole-process CPU per frame, a real Wi-Fi day, `replay --no-mqtt`",
        "<= 5 µs", "µs", "max", 5.0),
    Row("replay_mqtt_us", "the same, publishing into a local Mosquitto", "<= 5 µs", "µs",
        "max", 5.0),
    Row("event_us", "CPU per published event (gateway process)", "as low as it goes", "µs",
        "none", 0.0),
    *_CROWD,
    Row("replay_us_compiled", "compiled build (`make wheel`): whole-process CPU per frame, "
        "`replay --no-mqtt`", "<= 5 µs", "µs", "max", 5.0),
    Row("replay_mqtt_us_compiled", "  the same, publishing into a local Mosquitto", "<= 5 µs",
        "µs", "max", 5.0),
    *(_compiled(row) for row in _CROWD),
    Row("ble_uncached_us", "BLE decode, uncached, widest corpus (from an Advert)", "<= 2 µs",
        "µs", "max", 2.0),
    Row("ble_theengs_all", "BLE decode vs TheengsDecoder, paired, all adverts", ">= 500x",
        "x", "min", 500.0),
    Row("ble_theengs_both", "BLE decode vs TheengsDecoder, paired, adverts both decode",
        ">= 500x", "x", "min", 500.0),
    Row("wifi_scapy_ratio", "Wi-Fi parse vs scapy, paired", ">= 200x", "x", "min", 200.0),
    Row("publish_per_s", "outbox -> Mosquitto, acknowledged QoS 1", ">= 5,000/s", "/s", "min",
        5000.0),
)


def report(key: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": key, "value": value, "lo": lo, "hi": hi}) + "\n")


def _fmt(v: float, unit: str) -> str:
    if unit in ("/s", "x") and v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"


def table(path: Path) -> str:
    got: dict[str, dict[str, Any]] = {}  # key -> {"value", "lo", "hi"} as report() wrote
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            got[item["key"]] = item
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; medians [range] over interleaved rounds",
             "", "| figure | goal | measured | vs goal |", "|---|---|---|---|"]
    for row in ROWS:
        item = got.get(row.key)
        if item is None:
            lines.append(f"| {row.figure} | {row.goal} | not measured | |")
            continue
        v = float(item["value"])
        sep = "" if row.unit in ("x", "/s") else " "
        cell = f"{_fmt(v, row.unit)}{sep}{row.unit}"
        if item["lo"] is not None and item["hi"] is not None:
            cell += f" [{_fmt(float(item['lo']), row.unit)}-{_fmt(float(item['hi']), row.unit)}]"
        verdict = ""
        if row.sense == "max":
            verdict = f"{v / row.target:.2f}x the goal" + (" (met)" if v <= row.target else "")
        elif row.sense == "min":
            verdict = f"{v / row.target:.2f}x the goal" + (" (met)" if v >= row.target else "")
        lines.append(f"| {row.figure} | {row.goal} | {cell} | {verdict} |")
    for key, build in (("replay_us", "pure Python"), ("replay_us_compiled", "compiled")):
        us = got.get(key)
        if us is None:
            continue
        per_frame = float(us["value"])
        share = per_frame * PI4_FACTOR * RADIO_LIMIT_PER_S / 1e6
        lines += ["", f"Pi 4 estimate, {build}: {per_frame:.2f} µs here x {PI4_FACTOR} "
                  f"(Pi 4 vs this machine) x {RADIO_LIMIT_PER_S:,} observations/s (both "
                  f"radios' physical limit) = {share:.1%} of one Pi 4 core (goal: 10 %)."]
    return "\n".join(lines)
