"""Calibration from ground truth: fit `footfall.people_per_device` from true counts.

Pure: the replayed day's footfall (interval end, `present`, the factor it was computed with)
and a CSV of true counts in; the fitted factor, the per-interval pairs and the MAE before and
after out.

Method (each step says why):
- The truth CSV (`time,count`: a door counter's occupancy or manual counts) is bucketed by the
  footfall interval; several rows in one interval are averaged. A footfall event at boundary B
  describes the interval [B - interval, B), so it is compared with that bucket.
- `present` is linear in the factor (devices x factor; the smoothing median too), so one replay
  gives each interval's device count D = present / factor, and the MAE of any other factor
  without replaying again.
- The fit is least absolute deviations through the origin: the factor f minimising
  sum |T - f D| is the median of the ratios T / D weighted by D. Not least squares: the error
  we report (and the bench reports) is the MAE, and the minutes the count is wrong for another
  reason than the factor (a class arriving while the walk-in delay holds `present` back, a
  corridor device in an empty morning) are large residuals that a squared loss lets pull the
  factor; a median ignores how far they are. Intervals with D = 0 say nothing about the factor
  (weight 0).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from presence_gateway.errors import ConfigError, ConfigErrors

_MIN_FACTOR, _MAX_FACTOR = 0.01, 100.0  # the bounds `footfall.people_per_device` accepts


@dataclass(frozen=True, slots=True)
class Pair:
    """One footfall interval with a true count: its end, the device count behind `present`
    (fractional when smoothed), the published `present` and the truth."""

    end: float
    devices: float
    present: float
    truth: float


@dataclass(frozen=True, slots=True)
class Fit:
    factor: float          # the fitted people_per_device, rounded to 0.01
    old_factor: float
    pairs: tuple[Pair, ...]
    mae_before: float
    mae_after: float


def parse_truth(text: str, source: str, timezone: str) -> list[tuple[float, float]]:
    """(Unix time, count) rows of a `time,count` CSV. `time` is RFC 3339 with an offset (or
    Z), or a local time without one, read in `timezone` (the store's). Every bad row is
    reported (`source:line`), none skipped silently."""
    tz = ZoneInfo(timezone)
    rows: list[tuple[float, float]] = []
    errors: list[ConfigError] = []
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or ()]
    if "time" not in fields or "count" not in fields:
        raise ConfigError(source, "", 1, "the truth CSV needs the columns time and count")
    for raw in reader:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        line = reader.line_num
        try:
            when = dt.datetime.fromisoformat(row["time"].replace("Z", "+00:00"))
        except ValueError:
            errors.append(ConfigError(source, "time", line,
                                      f"not an RFC 3339 or local time: {row['time']!r}"))
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)
        try:
            count = float(row["count"])
        except ValueError:
            errors.append(ConfigError(source, "count", line,
                                      f"not a number: {row['count']!r}"))
            continue
        if not count >= 0:  # also NaN
            errors.append(ConfigError(source, "count", line, f"must be >= 0, got {count:g}"))
            continue
        rows.append((when.timestamp(), count))
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
    if not rows:
        raise ConfigError(source, "", None, "no rows of true counts")
    return rows


def pairs(footfall: Iterable[tuple[float, float, float]], truth: Iterable[tuple[float, float]],
          people_per_device: float) -> list[Pair]:
    """Join footfall (interval end, interval_s, present) with the truth bucketed per interval.
    Intervals without a true count are left out."""
    footfall = list(footfall)
    if not footfall:
        return []
    interval = footfall[0][1]
    sums: dict[int, list[float]] = {}
    for ts, count in truth:
        acc = sums.setdefault(int(ts // interval), [0.0, 0.0])
        acc[0] += count
        acc[1] += 1
    out: list[Pair] = []
    for end, _, present in footfall:
        bucket = sums.get(round(end / interval) - 1)
        if bucket is not None:
            out.append(Pair(end, present / people_per_device, present, bucket[0] / bucket[1]))
    return out


def mae(ps: Sequence[Pair], factor: float) -> float:
    """The MAE `present` would have had with `factor` (rounded as Footfall rounds it)."""
    return sum(abs(round(p.devices * factor, 2) - p.truth) for p in ps) / len(ps)


def lad_factor(ps: Sequence[Pair]) -> float | None:
    """argmin_f sum |T - f D|: the D-weighted median of T / D (None when no device was seen)."""
    ratios = sorted((p.truth / p.devices, p.devices) for p in ps if p.devices > 0)
    total = sum(w for _, w in ratios)
    if total == 0:
        return None
    acc = 0.0
    for ratio, w in ratios:
        acc += w
        if acc >= total / 2:
            return ratio
    return ratios[-1][0]


def fit(ps: Sequence[Pair], people_per_device: float) -> Fit | None:
    """The fitted factor (None: no interval with both a device and a true count)."""
    f = lad_factor(ps)
    if f is None:
        return None
    factor = min(_MAX_FACTOR, max(_MIN_FACTOR, round(f, 2)))
    return Fit(factor, people_per_device, tuple(ps), mae(ps, people_per_device), mae(ps, factor))


def snippet(f: Fit) -> str:
    """The fit as a config snippet for `presence:`."""
    return ("presence:\n"
            "  footfall:\n"
            f"    people_per_device: {f.factor:g}   # fitted on {len(f.pairs)} intervals: "
            f"MAE {f.mae_before:.2f} -> {f.mae_after:.2f} people\n")
