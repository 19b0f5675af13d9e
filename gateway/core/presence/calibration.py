"""Calibration from a walk test: an installer stands at marked spots with a known phone or
beacon while the sensors record; this proposes per-sensor RSSI offsets and zone thresholds.

Pure: a walk plan and (time, sensor, RSSI) readings of the known device in, a proposal out.

Method (each step says why):
- Readings are grouped by spot (its time window) and sensor; a spot's level is the median, its
  spread the interquartile range (robust to the body shadowing a phone in a hand sees).
- Sensor offsets: at the zone *centres*, each sensor hears the device near its best; a sensor
  whose centre median sits above the median of all sensors' centres has a hotter radio (or a
  better antenna). Its offset brings it to that common level, so one threshold means the same
  at every sensor. The correction is rounded to 0.5 dB: finer is noise.
- Zone thresholds (after offsets): `enter_rssi` is the level at the zone's *boundary* spot
  (standing at the edge should be "just in"); `leave_rssi` sits below it by the larger of
  3 dB and twice the boundary's spread (at most 12 dB), so readings at the edge do not
  flap in and out.
- Expected flapping: the proposed band is replayed over the boundary readings through the
  same smoothing as the engine (a Kalman filter with the configured noise), counting zone
  changes per hour while the installer stood still. 0 is the goal; the CLI warns above 2.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.tracker import Signal
from presence_gateway.core.yamlread import Reader, load_yaml

SPOTS = ("centre", "boundary")
MAX_GAP_DB = 12


@dataclass(frozen=True, slots=True)
class Spot:
    zone: str
    where: str      # "centre" | "boundary"
    start: float    # seconds since the recording's first reading of the device
    end: float


@dataclass(frozen=True, slots=True)
class WalkPlan:
    device: str     # a MAC address ("aa:bb:...") or an iBeacon id "uuid/major/minor"
    spots: tuple[Spot, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    ts: float
    sensor: str
    rssi: float


@dataclass(frozen=True, slots=True)
class ZoneProposal:
    zone: str
    sensor: str
    enter_rssi: float
    leave_rssi: float
    boundary_readings: int
    flaps_per_hour: float


@dataclass(frozen=True, slots=True)
class Proposal:
    offsets: tuple[tuple[str, float], ...]
    zones: tuple[ZoneProposal, ...]
    warnings: tuple[str, ...]


def parse_plan(text: str, filename: str) -> WalkPlan:
    """The walk plan YAML: `device:` and `spots: [{zone, at: centre|boundary, from, to}]`,
    times in seconds from the start of the walk recording. ConfigError(s) name file and line."""
    data, lines = load_yaml(text, filename)
    r = Reader(filename.rsplit("/", 1)[-1], data, lines)
    r.known_keys("", {"device", "spots"})
    device = r.str_("device", "", required=True)
    spots: list[Spot] = []
    for path in r.each("spots"):
        r.known_keys(path, {"zone", "at", "from", "to"})
        start = r.duration(f"{path}.from", 0.0)
        end = r.duration(f"{path}.to", 0.0)
        if end <= start:
            r.error(f"{path}.to", "must be after `from`")
        spots.append(Spot(zone=r.str_(f"{path}.zone", "", required=True),
                          where=r.str_(f"{path}.at", "", required=True, choices=SPOTS),
                          start=start, end=end))
    if not spots:
        r.error("spots", "list at least one centre and one boundary spot per zone")
    r.check()
    return WalkPlan(device=device, spots=tuple(spots))


def _in(spot: Spot, readings: Sequence[Reading], t0: float) -> list[Reading]:
    return [x for x in readings if spot.start <= x.ts - t0 < spot.end]


def _nearest(readings: Sequence[Reading]) -> tuple[str, list[Reading]] | None:
    """The sensor with the highest median reading, and its readings."""
    by_sensor: dict[str, list[Reading]] = {}
    for x in readings:
        by_sensor.setdefault(x.sensor, []).append(x)
    if not by_sensor:
        return None
    return max(by_sensor.items(),
               key=lambda kv: (statistics.median(r.rssi for r in kv[1]), kv[0]))


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def propose(plan: WalkPlan, readings: Sequence[Reading], settings: PresenceSettings,
            *, min_readings: int = 5) -> Proposal:
    warnings: list[str] = []
    if not readings:
        return Proposal((), (), ("the known device was never heard in the recordings",))
    t0 = min(x.ts for x in readings)
    # Centre levels per sensor -> offsets to the common (median) level. At a centre only the
    # sensor that hears it best counts (the zone's own sensor; the others hear it from afar).
    centre: dict[str, list[float]] = {}
    for spot in plan.spots:
        if spot.where == "centre":
            near = _nearest(_in(spot, readings, t0))
            if near is not None:
                centre.setdefault(near[0], []).extend(x.rssi for x in near[1])
    levels = {s: statistics.median(v) for s, v in centre.items() if len(v) >= min_readings}
    common = statistics.median(levels.values()) if levels else 0.0
    offsets = {s: round(2 * (common - lvl)) / 2 for s, lvl in levels.items()}
    zones: list[ZoneProposal] = []
    for spot in plan.spots:
        if spot.where != "boundary":
            continue
        here = _in(spot, readings, t0)
        if not here:
            warnings.append(f"zone {spot.zone}: no reading of the device at its boundary spot")
            continue
        # The zone belongs to the sensor that hears its boundary best (the nearest one).
        near = _nearest(here)
        assert near is not None
        sensor, got = near
        values = [x.rssi + offsets.get(sensor, 0.0) for x in got]
        if len(values) < min_readings:
            warnings.append(f"zone {spot.zone}: only {len(values)} boundary readings (want "
                            f">= {min_readings}); stand longer at the spot")
        enter = round(statistics.median(values))
        # Past 12 dB a zone, once entered, would hold a device well outside it: cap the gap
        # and let the flapping estimate say that this boundary is too noisy to draw here.
        leave = enter - min(MAX_GAP_DB, max(3, round(2 * _iqr(values))))
        flaps = _flaps(got, offsets.get(sensor, 0.0), enter, leave, settings)
        if flaps > 2:
            warnings.append(f"zone {spot.zone}: {flaps:.1f} zone changes per hour at the "
                            "boundary; widen the gap or move the sensor")
        zones.append(ZoneProposal(spot.zone, sensor, float(enter), float(leave), len(values),
                                  flaps))
    return Proposal(tuple(sorted(offsets.items())), tuple(zones), tuple(warnings))


def _flaps(readings: Sequence[Reading], offset: float, enter: float, leave: float,
           s: PresenceSettings) -> float:
    """Zone changes per hour while standing at the boundary, smoothed as the engine does."""
    ordered = sorted(readings, key=lambda r: r.ts)
    sig = Signal(ordered[0].rssi + offset, ordered[0].ts, s.kalman_measurement_noise)
    inside = True  # the installer walks to the boundary from the centre: inside to begin with
    changes = 0
    for x in ordered:
        if not sig.update(x.rssi + offset, x.ts, s.kalman_process_noise,
                          s.kalman_measurement_noise, s.outlier_db):
            continue
        now_in = sig.x >= leave if inside else sig.x >= enter
        if now_in != inside:
            changes += 1
        inside = now_in
    span = ordered[-1].ts - ordered[0].ts
    return changes * 3600.0 / span if span > 0 else 0.0


def snippet(p: Proposal) -> str:
    """The proposal as a config snippet for `presence:` (zones keep their other keys)."""
    lines = ["presence:"]
    if p.offsets:
        lines.append("  rssi_offsets:            # dB added to each sensor's readings")
        lines += [f"    {s}: {o:g}" for s, o in p.offsets]
    lines.append("  zones:")
    for z in p.zones:
        lines += [f"    - name: {z.zone}",
                  f"      sensors: [{z.sensor}]",
                  f"      enter_rssi: {z.enter_rssi:g}     # median at the boundary spot "
                  f"({z.boundary_readings} readings)",
                  f"      leave_rssi: {z.leave_rssi:g}     # expected flapping: "
                  f"{z.flaps_per_hour:.1f}/h standing at the edge"]
    return "\n".join(lines) + "\n"
