"""`presence-gateway calibrate-count --truth TRUE.csv CAPTURE... [-c CONFIG]`: fit
`presence.footfall.people_per_device` from true counts over a replayed day.

The captures are replayed through the gateway itself (runtime/simulate.py, as `offers
simulate` does: the config's privacy, grouping and presence settings, nothing published, the
live database untouched); each `presence.footfall` interval's `present` is compared with the
CSV's true count (`time,count`; RFC 3339, or local time in the config's `store.timezone`).
The fit (core/presence/count_calibration.py: least absolute deviations, the device-weighted
median of true / devices) goes to stdout as a config snippet; the MAE before and after, and
the number of intervals compared, to stderr.

Exit codes: 0 ok, 1 a capture unreadable or nothing to fit on, 2 bad config, CSV or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from presence_gateway.cli.common import Subparsers, add_config
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.events import EventType
from presence_gateway.core.model import OutboundMessage
from presence_gateway.core.presence.count_calibration import Fit, fit, pairs, parse_truth, snippet
from presence_gateway.errors import ConfigError, GatewayError
from presence_gateway.runtime.simulate import simulate


def register(sub: Subparsers) -> None:
    p = sub.add_parser("calibrate-count",
                       help="fit people_per_device from true counts over replayed captures",
                       description="Replay captures, compare `present` with a CSV of true "
                                   "counts (time,count) and print the fitted "
                                   "presence.footfall.people_per_device (see docs/presence.md).")
    p.add_argument("--truth", required=True, metavar="TRUE.csv",
                   help="true counts: columns time (RFC 3339, or local store time) and count")
    p.add_argument("captures", nargs="+", metavar="CAPTURE")
    add_config(p, "gateway config (store.timezone, presence settings, privacy secret)")
    p.set_defaults(func=calibrate_count)


def calibrate_count(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    result = run(cfg, args.truth, args.captures)
    return report(result, sys.stdout, sys.stderr)


def run(cfg: GatewayConfig, truth_path: str, captures: Sequence[str]) -> Fit | None:
    try:
        text = Path(truth_path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(truth_path, "", None, f"cannot read file: {exc}") from None
    truth = parse_truth(text, truth_path, cfg.timezone)  # before the replay: fail fast
    sim = asyncio.run(simulate(cfg, captures))
    ppd = cfg.presence.people_per_device
    return fit(pairs(footfall(sim.messages), truth, ppd), ppd)


def footfall(messages: Sequence[OutboundMessage]) -> list[tuple[float, float, float]]:
    """(interval end, interval_s, present) of each `presence.footfall` CloudEvent."""
    out: list[tuple[float, float, float]] = []
    for m in messages:
        if m.retain:
            continue
        body = orjson.loads(m.payload)
        if body.get("type") != EventType.FOOTFALL.value:
            continue
        end = dt.datetime.fromisoformat(body["time"].replace("Z", "+00:00")).timestamp()
        data = body["data"]
        out.append((end, float(data["interval_s"]), float(data["present"])))
    return out


def report(result: Fit | None, out: IO[str], err: IO[str]) -> int:
    if result is None:
        raise GatewayError("nothing to fit: no footfall interval with both a counted device "
                           "and a true count (do the CSV's times overlap the captures?)")
    out.write(snippet(result))
    err.write(f"calibrate-count: {len(result.pairs)} intervals compared; people_per_device "
              f"{result.old_factor:g} -> {result.factor:g} (least absolute deviations: the "
              f"device-weighted median of true / devices); MAE {result.mae_before:.2f} -> "
              f"{result.mae_after:.2f} people\n")
    return 0
