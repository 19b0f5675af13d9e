"""Signal tracking: RSSI smoothing, distance, proximity bands, zones with hysteresis, arbitration.

Invariants:
- Pure functions and small slotted state; no clock: every call takes the capture time.
- `Signal.update` is a scalar Kalman filter on RSSI with a random-walk model: the variance grows
  by `q` dB^2 per second between readings and each reading has variance `r`. A reading more
  than `outlier_db` from the estimate is dropped once (a reflection, a body in the way); a second
  one in a row is believed and resets the filter (the device really moved).
- Zone decisions are only re-evaluated when the smoothed RSSI leaves the band [lo, hi) computed
  at the last decision, so a device sitting still costs two float comparisons per reading.
- `arbitrate` depends only on its arguments, so every gateway given the same summaries picks
  the same owner: highest smoothed RSSI, ties broken by gateway id, and the current owner keeps
  the device until another gateway is better by the stickiness margin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from presence_gateway.core.presence.config import ZoneSettings
from presence_gateway.core.state import Snapshotted

INF = float("inf")
# One shared -inf: `-INF` is a negation at run time, a new float object each time. A unit's
# band edge or peak made that way is an object of its own, out of the CPU cache when a crowd
# is present (bench.presence_memory --crowd), where the shared one stays hot.
NEG_INF = -INF

# iBeacon's proximity bands (Apple CLProximity): immediate within ~0.5 m, near within ~3 m.
IMMEDIATE_M = 0.5
NEAR_M = 3.0


class Signal(Snapshotted):
    """A 1-D Kalman estimate of one device's RSSI at one gateway."""

    __slots__ = ("n", "p", "t", "x")

    def __init__(self, rssi: float, ts: float, r: float) -> None:
        self.x = rssi
        self.p = r
        self.t = ts
        self.n = 0  # consecutive outliers dropped

    def update(self, rssi: float, ts: float, q: float, r: float, outlier_db: float) -> bool:
        """Fold one reading in; False when it was dropped as an outlier."""
        dt = ts - self.t
        p = self.p + q * (dt if dt > 0.0 else 0.0)
        d = rssi - self.x
        if (d > outlier_db or d < -outlier_db) and self.n == 0:
            self.n = 1
            return False
        if self.n:
            # Second outlier in a row: the device moved; restart from this reading.
            self.n = 0
            if d > outlier_db or d < -outlier_db:
                self.x, self.p, self.t = rssi, r, ts
                return True
        k = p / (p + r)
        self.x += k * d
        self.p = (1.0 - k) * p
        self.t = ts
        return True


def distance_m(rssi: float, ref_power: float, exponent: float) -> float:
    """Log-distance path loss: rssi = ref - 10 n log10(d)  ->  d = 10^((ref - rssi) / 10n)."""
    return float(10.0 ** ((ref_power - rssi) / (10.0 * exponent)))


def rssi_at(distance: float, ref_power: float, exponent: float) -> float:
    """Inverse of `distance_m`: the RSSI expected at `distance` metres."""
    from math import log10

    return ref_power - 10.0 * exponent * log10(distance)


def proximity(distance: float) -> str:
    if distance < IMMEDIATE_M:
        return "immediate"
    if distance < NEAR_M:
        return "near"
    return "far"


@dataclass(frozen=True, slots=True, eq=False)
class Zone(Snapshotted):
    """A zone with its thresholds resolved to RSSI for one reference power. Compared and
    hashed by identity (eq=False): each engine resolves its zones once, and the footfall walk
    counts its units per zone object (a generated __hash__ was half that walk's cost)."""

    name: str
    sensors: frozenset[str]
    enter: float
    leave: float
    min_confirm_s: float
    exponent: float


def resolve_zones(zones: Sequence[ZoneSettings], ref_power: float) -> tuple[Zone, ...]:
    """Turn distance thresholds into RSSI ones (for this radio's reference power)."""
    out = []
    for z in zones:
        enter, leave = z.enter_rssi, z.leave_rssi
        if z.enter_distance_m is not None:
            enter = rssi_at(z.enter_distance_m, ref_power, z.path_loss_exponent)
            leave_d = z.leave_distance_m or z.enter_distance_m * 1.5
            leave = rssi_at(leave_d, ref_power, z.path_loss_exponent)
        out.append(Zone(z.name, frozenset(z.sensors), enter, min(leave, enter),
                        z.min_confirm_s, z.path_loss_exponent))
    # Most demanding zone first: a device strong enough for a small inner zone is placed there
    # rather than in the store-wide zone that also accepts it. Ties keep config order.
    return tuple(sorted(out, key=lambda z: -z.enter))


def choose_zone(zones: Sequence[Zone], current: Zone | None, rssi: float,
                sensor: str) -> tuple[Zone | None, float, float]:
    """The zone a device at `rssi` belongs to, and the band [lo, hi) where that answer holds.

    Hysteresis: the current zone is kept while rssi >= its leave threshold unless a more
    demanding zone's enter threshold is reached; another zone needs its enter threshold.
    """
    lo, hi = NEG_INF, INF
    for z in zones:
        if z.sensors and sensor not in z.sensors:
            continue
        threshold = z.leave if z is current else z.enter
        if rssi >= threshold:
            lo = max(lo, threshold)
            return z, lo, hi
        hi = min(hi, threshold)
    return None, lo, hi


@dataclass(frozen=True, slots=True)
class PeerReading(Snapshotted):
    """One gateway's smoothed view of one device (a line of a sync summary)."""

    gateway: str
    rssi: float
    last_seen: float


def arbitrate(readings: Mapping[str, PeerReading], owner: str | None, now: float,
              margin_db: float, stale_s: float) -> str | None:
    """Which gateway owns a device now. Deterministic in its arguments (see module doc)."""
    best: PeerReading | None = None
    for gw in sorted(readings):
        r = readings[gw]
        if now - r.last_seen > stale_s:
            continue
        if best is None or r.rssi > best.rssi:
            best = r
    if best is None:
        return None
    if owner is not None and owner != best.gateway:
        cur = readings.get(owner)
        if cur is not None and now - cur.last_seen <= stale_s and best.rssi - cur.rssi < margin_db:
            return owner
    return best.gateway
