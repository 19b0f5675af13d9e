"""Footfall: entries, exits, passers-by, dwell medians and occupancy, per interval and per zone.

Invariants:
- Counters only; the engine tells it what happened (entry, exit, passer-by, zone stays) and
  gives it the present population at each interval boundary. No clock of its own.
- Interval counters reset after each `presence.footfall` event; day counters (capture rate,
  median dwell) reset when the UTC day changes. Dwell lists are capped, so memory is bounded.
- People are estimated, not counted: devices that cannot be told apart are grouped before they
  reach here (fingerprint grouping for Wi-Fi), the Wi-Fi and BLE counts are fused (one phone
  usually shows on both radios: core/presence/fusion.py, the pooled count once the store's
  BLE-to-Wi-Fi ratio is learnt, else the larger), and the result is scaled by
  `people_per_device` (people per detected device, a site calibration).
- `present` is the median of the last `smoothing` interval values (store-wide and per zone):
  a device that misses one probe burst, or a passer-by's minute, does not move it; a real
  change shows after half the window. `present_now` is the unsmoothed value.
- `present_interval` is an 80 % interval for `present` from a stated model (`interval`,
  docs/presence.md "Uncertainty"); it always contains `present`.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from math import ceil, floor, sqrt
from typing import Any

from presence_gateway.core.presence.fusion import RadioFusion
from presence_gateway.core.state import Snapshotted

_DWELL_CAP = 50_000  # visits remembered per day for the median: bounded memory

# The uncertainty model of `present` (docs/presence.md "Uncertainty"). The people behind D
# counted devices: D is read as a Poisson count of a latent device rate (missed bursts, split
# or merged random-address groups, a corridor device), sd sqrt(D), and never less than one
# device of spread (a zero reading is not a certain zero); people_per_device carries its own
# calibration error, relative sd 2.4 % (the two Brno class days' fitted factors, 0.799 and
# 0.772: their sample sd over their mean). Both are combined in quadrature and taken at the
# two-sided 80 % normal quantile.
INTERVAL_Z = 1.2816  # N(0,1) quantile 0.9: 10 % below, 10 % above
PPD_REL_SD = 0.024


def interval(devices: float, people_per_device: float,
             z: float = INTERVAL_Z, ppd_rel_sd: float = PPD_REL_SD) -> list[float]:
    """[low, high] for the people behind `devices` counted devices (fractional when smoothed).
    Always low <= devices * people_per_device <= high, low >= 0."""
    d = max(0.0, devices)
    count_sd = sqrt(max(d, 1.0))
    half = z * sqrt(count_sd ** 2 + (ppd_rel_sd * d) ** 2) * people_per_device
    mid = d * people_per_device
    # round outward so rounding never puts `present` (rounded to 0.01) outside
    return [max(0.0, _floor2(mid - half)), _ceil2(mid + half)]


def _floor2(x: float) -> float:
    return floor(round(x * 100, 6)) / 100  # round(.., 6) first: 0.29 * 100 is 28.999...


def _ceil2(x: float) -> float:
    return ceil(round(x * 100, 6)) / 100


def _median(values: list[float]) -> float | None:
    n = len(values)
    if n == 0:
        return None
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2.0


@dataclass(slots=True)
class _Counts(Snapshotted):
    entries: int = 0
    exits: int = 0
    passers_by: int = 0
    day_entries: int = 0
    day_exits: int = 0
    day_passers_by: int = 0
    dwell: list[float] = field(default_factory=list)

    def reset_interval(self) -> None:
        self.entries = self.exits = self.passers_by = 0

    def reset_day(self) -> None:
        self.reset_interval()
        self.day_entries = self.day_exits = self.day_passers_by = 0
        self.dwell.clear()

    def add_dwell(self, seconds: float) -> None:
        if len(self.dwell) < _DWELL_CAP:
            insort(self.dwell, round(seconds, 1))


@dataclass(slots=True)
class Population(Snapshotted):
    """Who is present now: device counts per radio, store-wide and per zone."""

    wifi: int = 0
    ble: int = 0
    # Wi-Fi devices estimated inside since the gateway started but not confirmed yet (the
    # cold-start weights, core/presence/population.py): counted in `present`, not `devices`.
    unheard: float = 0.0
    zones: dict[str, list[int]] = field(default_factory=dict)  # zone -> [wifi, ble]

    def add(self, radio_is_wifi: bool, zone: str | None) -> None:
        if radio_is_wifi:
            self.wifi += 1
        else:
            self.ble += 1
        if zone is not None:
            pair = self.zones.setdefault(zone, [0, 0])
            pair[0 if radio_is_wifi else 1] += 1


class _Median(Snapshotted):
    """The median of the last n values pushed (n small: a sort per interval is nothing)."""

    __slots__ = ("values",)

    def __init__(self, n: int) -> None:
        self.values: deque[float] = deque(maxlen=max(1, n))

    def push(self, value: float) -> float:
        self.values.append(value)
        median = _median(sorted(self.values))
        return value if median is None else round(median, 2)


class Footfall(Snapshotted):
    def __init__(self, zones: tuple[str, ...], people_per_device: float,
                 smoothing: int = 1) -> None:
        self.zone_names = zones
        self.people_per_device = people_per_device
        self.smoothing = smoothing
        self._present = _Median(smoothing)
        self._zone_present = {z: _Median(smoothing) for z in zones}
        self.total = _Counts()
        self.zones = {z: _Counts() for z in zones}
        self.day: int | None = None
        self.fusion = RadioFusion()

    def carry_over(self, old: Footfall) -> None:
        """Take the day's counts of `old` (new settings, same day): the store's, and each
        zone's that still exists; a new zone starts at zero."""
        self.day, self.total, self._present = old.day, old.total, old._present
        self.fusion = getattr(old, "fusion", self.fusion)  # a snapshot of an older version
        for name in self.zones:
            if name in old.zones:
                self.zones[name] = old.zones[name]
                self._zone_present[name] = old._zone_present[name]

    def roll_day(self, day: int) -> None:
        if day != self.day:
            self.day = day
            self.total.reset_day()
            for c in self.zones.values():
                c.reset_day()

    def entry(self) -> None:
        self.total.entries += 1
        self.total.day_entries += 1

    def passer_by(self) -> None:
        self.total.passers_by += 1
        self.total.day_passers_by += 1

    def exit(self, dwell_s: float) -> None:
        self.total.exits += 1
        self.total.day_exits += 1
        self.total.add_dwell(dwell_s)

    def zone_entry(self, zone: str) -> None:
        c = self.zones.get(zone)
        if c is not None:
            c.entries += 1
            c.day_entries += 1

    def zone_exit(self, zone: str, dwell_s: float) -> None:
        c = self.zones.get(zone)
        if c is not None:
            c.exits += 1
            c.day_exits += 1
            c.add_dwell(dwell_s)

    def people(self, wifi: float, ble: int) -> float:
        return round(self.fusion.devices(wifi, ble) * self.people_per_device, 2)

    def snapshot(self, pop: Population) -> dict[str, Any]:
        """The `presence.footfall` data for the interval just ended; resets interval counts."""
        t = self.total
        visitors = t.day_entries
        seen = visitors + t.day_passers_by
        zones: dict[str, Any] = {}
        for name in self.zone_names:
            c = self.zones[name]
            w, b = pop.zones.get(name, (0, 0))
            zones[name] = {"present": self._zone_present[name].push(self.people(w, b)),
                           "devices": w + b,
                           "entries": c.entries, "exits": c.exits,
                           "median_dwell_s": _median(c.dwell)}
            c.reset_interval()
        wifi = pop.wifi + pop.unheard
        now = self.people(wifi, pop.ble)
        present = self._present.push(now)
        # the Poisson count behind `present` (the median's, when smoothed): W + B when pooled,
        # each worth 1 / (1 + r) Wi-Fi devices
        _, worth = self.fusion.pooled(wifi, pop.ble)
        ppd = self.people_per_device * worth
        self.fusion.learn(pop.wifi, pop.ble)
        data: dict[str, Any] = {
            "present": present, "present_now": now,
            "present_interval": interval(present / ppd, ppd),
            "devices": {"wifi": pop.wifi, "ble": pop.ble},
            "entries": t.entries, "exits": t.exits, "passers_by": t.passers_by,
            "median_dwell_s": _median(t.dwell),
            "capture_rate": round(visitors / seen, 4) if seen else None,
            "today": {"entries": t.day_entries, "exits": t.day_exits,
                      "passers_by": t.day_passers_by},
            "zones": zones,
        }
        t.reset_interval()
        return data


def occupancy_states(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Retained state payloads derived from a footfall snapshot: (topic suffix, data)."""
    today = data["today"]
    out: list[tuple[str, dict[str, Any]]] = [("occupancy", {
        "present": data["present"], "entries": today["entries"], "exits": today["exits"],
        "passers_by": today["passers_by"], "median_dwell_s": data["median_dwell_s"],
        "capture_rate": data["capture_rate"]})]
    for name, z in data["zones"].items():
        out.append((f"occupancy/{name}", {"zone": name, "present": z["present"],
                                          "median_dwell_s": z["median_dwell_s"]}))
    return out
