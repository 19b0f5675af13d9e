"""Per-unit state of the presence engine, and what counts as a person-carried device.

Invariants:
- `Unit` is a plain slotted object mutated in place on the hot path (no allocation per
  reading); everything a visit needs to be closed later is in it.
- The grouper maps a Wi-Fi observation with a random address to a stable, pseudonymous group
  key (core/presence/grouping.py `DeviceGrouper`); any `Grouper` can stand in (tests,
  benchmarks that compare groupings).
"""

from __future__ import annotations

import math
from typing import Protocol

from presence_gateway.core.model import Kind, Observation, Radio
from presence_gateway.core.presence.grouping import DeviceGrouper
from presence_gateway.core.presence.hopping import OWN_READINGS, CatchModel, peak_relief
from presence_gateway.core.presence.tracker import INF, NEG_INF, Signal, Zone
from presence_gateway.core.state import restored

# BLE advert kinds that phones (and watches/tablets carried by a person) send on their own.
# Beacons, trackers and accessories are tracked and get visits, but are not people.
PHONE_KINDS = frozenset({Kind.APPLE.value, Kind.EXPOSURE_NOTIFICATION.value,
                         Kind.SAMSUNG.value})


def is_person(obs: Observation) -> bool:
    if obs.radio is Radio.WIFI or obs.identity is not None:
        return True
    return obs.kind in PHONE_KINDS


def beacon_ref_power(obs: Observation) -> float | None:
    """RSSI at 1 m a beacon announces: iBeacon/AltBeacon measured power, or Eddystone's
    0 m TX power less the 41 dB the Eddystone spec gives for the first metre."""
    if obs.radio is not Radio.BLE or not obs.fields:
        return None
    f = obs.fields
    for name, offset in (("power", 0.0), ("ref_rssi", 0.0), ("tx_power", -41.0)):
        v = f.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and -127 <= v <= 20:
            return float(v) + offset
    return None


BURST_S = 5.0


class Grouper(Protocol):
    def observe(self, obs: Observation) -> str: ...


def default_grouper() -> Grouper:
    """The randomization-aware grouper (fingerprint + sequence continuity + burst timing + RSSI):
    one phone's rotating addresses are one unit, so `present` counts devices, not addresses."""
    return DeviceGrouper()


class Unit(Signal):
    """One device (or group of addresses) and its open visit, if any. It is its own RSSI
    estimate (a `Signal`: x, p, t), not the holder of one: with 100k devices present every
    reading of a unit missed the CPU cache on a second object too (bench.presence_memory
    --crowd, paired: 2.87 -> 2.76 µs per observation at 100k, 1k unchanged)."""

    # Slot order is memory order (with 100k devices present each reading misses the CPU
    # cache): after Signal's x, p, t, n come the fields the footfall walk reads (population
    # .present: last to zone, two cache lines), then the rest of what every reading of a
    # visit touches (gap to next_mark; x to next_mark is the reading's span), then the rest.
    __slots__ = (  # noqa: RUF023 (memory order, not sorted)
        "last", "stretch", "max_x", "relief", "inside", "person", "fixture", "radio", "zone",
        "gap", "visit", "sensor", "off", "count", "strong", "walkin", "lo", "hi", "cand_due",
        "owned", "next_mark", "first", "day_present", "limit",
        "announced", "cand", "chans", "chans_n", "dwell", "hold", "key", "mark_i", "path", "ref",
        "zone_since", "due_at")

    def __init__(self, key: str, radio: Radio, ts: float, rssi: float, r: float,
                 person: bool) -> None:
        self.key = key
        self.radio = radio
        self.person = person
        super().__init__(rssi, ts, r)
        self.sensor = ""
        self.off = 0.0  # dB: the sensor offset its smoothed RSSI and peak are expressed in
        self.ref: float | None = None
        self.day_present = 0.0
        self.fixture = False
        self.limit = INF  # presence per day beyond which this unit is a fixture (engine sets)
        self.owned = True
        self.last: float = ts
        self.gap = 0.0  # running mean of the gaps between its bursts (0: not known yet)
        # Under a channel plan (core/presence/hopping.py): the channels it was heard on (a
        # bitmask), its readings so far, and 1 / p, how much sparser the radio hears it.
        self.chans = 0
        self.chans_n = 0
        self.stretch = 1.0
        self.relief = 0.0  # dB: how much lower its peak reads than a fixed radio's would
        self.due_at = -1.0  # when the engine's expiry wheel looks at it next (wheel.py OUT: not
        # filed yet; the engine files every unit it creates or adopts)
        self.reset(ts)

    def __setstate__(self, state: object) -> None:
        """Unpickle (core/continuity.py), also a unit of an older gateway's snapshot, brought
        to this layout here (the one place), so an upgrade keeps the day: its estimate was a
        `sig` object (now x, p, t, n), it had no channel mask or peak relief, its zone path
        was a list, and a visit that had ended left `inside` set (a unit counted on one
        reading at a cold start, no visit yet, waits for its second one again)."""
        slots = restored(state)
        sig = slots.pop("sig", None)
        if sig is not None:
            slots.update(x=sig.x, p=sig.p, t=sig.t, n=sig.n)
        if "chans" not in slots:
            slots.update(chans=0, chans_n=0, stretch=1.0)
        slots.setdefault("relief", 0.0)
        slots.setdefault("due_at", -1.0)  # filed when the engine adopts it (wheel.rebuild)
        if isinstance(slots.get("path"), list):
            slots["path"] = tuple(slots["path"])
        if slots.get("visit") is None:
            slots["inside"] = False
        super().__setstate__(slots)

    def heard(self, ts: float) -> None:
        """A reading at `ts` was accepted: learn the device's rhythm from the gap before it.
        Frames closer than BURST_S belong to one burst (a scan sends several probes within a
        second); the mean follows a changed rhythm (screen off) within a few bursts."""
        gap = ts - self.last
        if gap > BURST_S:
            self.gap = gap if self.gap == 0.0 else self.gap + 0.25 * (gap - self.gap)
        if ts > self.last:
            self.last = ts

    def hopped(self, bit: int, ts: float, catch: CatchModel, sigma_db: float) -> None:
        """A Wi-Fi reading under a channel plan (`bit`: its channel): the channels heard on,
        the bursts caught, and 1 / p from them (core/presence/hopping.py); settled after a
        few bursts on channels already known, recomputed whenever a new one is heard. A
        reading within BURST_S of the last on a known channel is the same burst: a burst's
        probes fall in one dwell, so counting them as readings made a sweeping phone's first
        burst look like many bursts on one channel (p = 1 / n). The peak relief follows the
        bursts and p once it has OWN_READINGS bursts of its own (`sigma_db`: one reading's
        spread)."""
        new = not self.chans & bit
        self.chans |= bit
        if not new and ts - self.last <= BURST_S and self.chans_n:
            return  # the same burst: its probes fall in one dwell, they say nothing more
        self.chans_n += 1
        if new or self.chans_n <= 4 * OWN_READINGS:
            p = catch.p(self.chans, self.chans_n)
            if self.chans_n == OWN_READINGS:
                catch.learn(p)
            self.stretch = 1.0 / p
        if self.chans_n >= OWN_READINGS:
            self.relief = peak_relief(self.chans_n, self.stretch, sigma_db)

    def rebase(self, shift: float) -> None:
        """Its sensor's learnt offset moved by `shift` dB: the smoothed RSSI and the peak,
        heard before, move with it, so a device heard while the sensor read hot is not judged
        near for the rest of its visit (and the zone is decided again)."""
        self.x += shift
        self.max_x += shift  # -inf (no reading since the visit started) stays -inf
        self.decide_zone_again()

    def decide_zone_again(self) -> None:
        """An empty zone band [lo, hi): the next reading decides the zone anew (a visit
        starts, its sensor or zone changed, new settings)."""
        self.lo, self.hi = INF, NEG_INF

    def evidence(self, min_sightings: int) -> int:
        """`min_sightings` at this unit's catch probability p: the readings a fixed radio
        would have had in the same time, times p (at least 1). A one-off frame is thinned by
        p too, so one reading at p <= 1/2 is as much evidence of a device as two at p = 1."""
        if self.stretch == 1.0:
            return min_sightings
        return max(1, math.ceil(min_sightings / self.stretch - 1e-9))

    def reset(self, ts: float) -> None:
        """Forget the last visit (a new one may start at `ts`)."""
        self.first = ts
        self.last = ts
        self.count = 0
        self.visit: str | None = None
        self.announced = False
        self.hold = NEG_INF  # no events for this visit before (multi-gateway start)
        self.walkin = False  # classification: a visitor (walk_in.min_time and min_rssi met)
        self.inside = False  # counting: confirmed strong enough to be in the store now
        self.max_x = NEG_INF
        self.strong = 0  # readings with the smoothed RSSI at or above walk_in.min_rssi
        self.zone: Zone | None = None
        self.zone_since = ts
        self.cand: Zone | None = None
        self.cand_due = INF
        self.decide_zone_again()  # the first reading of a visit decides the zone
        self.mark_i = 0
        self.next_mark = INF
        self.path: tuple[str, ...] = ()  # the zones entered, in order
        self.dwell = 0.0
