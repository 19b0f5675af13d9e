"""Placement: a per-sensor RSSI offset learnt from the sensor's own Wi-Fi readings.

The walk-in and zone thresholds (dBm) were set where the Brno lab's sniffer stood; another
spot, antenna or dongle hears the same room several dB hotter or colder, and a threshold
then means another distance. The rule (docs/presence.md "Placement"):

- Statistic: the 90th percentile of a sensor's Wi-Fi readings over windows of 200 readings
  (about 5 min of an occupied room, at most 30 min): the level of its strong sightings, people
  near the sensor. Measured on the Brno class days at position 1 it is -49 to -54 dBm in every
  occupied 10 min window of both days, so the reference is -51 dBm
  (`placement.reference_p90`).
- Only windows that look like an occupied store at the reference scale teach: at least
  `MIN_READINGS` readings and a p90 within `max_offset_db` of the reference. An empty room
  reads 20-30 dB lower (-72 to -81 dBm on the empty 02-28 morning): the same readings cannot
  tell an empty room from a very cold sensor, so such windows are ignored rather than read as
  a cold sensor (which would make the corridor count as the store).
- Offset = reference - the median p90 of the last `KEEP` accepted windows, rounded to 1 dB,
  applied after `MIN_WINDOWS` windows (about 10 min), 0 inside a dead band of `DEAD_BAND_DB`
  (radios of one model differ by a few dB and the reference placement must read as itself).

- Until then the sensor's scale is unknown (`unsure`): no window, closed or still open, has
  looked like an occupied store at the reference scale. A hot sensor's first empty morning
  hears the corridor as near and nothing in those readings says it is hot, so while a sensor
  is unsure the footfall judges its weak units sooner and by the hottest placement the rule
  accepts (population.py `present`; measured in docs/presence.md "A sensor not learnt yet").
  One qualifying window ends it for good (the offset itself waits for `MIN_WINDOWS`).
- Once the scale is known, a sensor whose store looks empty now (`states`: its last window's
  p90, at the reference scale, more than `max_offset_db` under the reference, or under
  `MIN_READINGS` readings, and the open window no busier) has the weak rule judge its weak
  units after `walk_in.min_time` instead of 30 min: that wait is for seated people who read
  weak in a busy room, and an empty store's weak devices are the corridor's. Sensors with a
  walk test's offset are watched for this too (their own offset is not learnt over).

A sensor with a configured `rssi_offsets` entry (a walk test, `presence-gateway calibrate`) is
not learnt over: its readings feed the windows (whether its store looks empty) but the walk
test's offset is the one applied. BLE is not learnt: no BLE day with occupancy to set its
reference.

Invariants: pure (capture time from the readings); bounded memory: per sensor one histogram of
`_BINS` ints and `KEEP` floats, at most `MAX_SENSORS` sensors (more are not learnt).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping

from presence_gateway.core.state import Snapshotted, restored

WINDOW_READINGS = 200  # a window closes after this many readings (~5 min of an occupied room)
WINDOW_S = 1800.0  # ... or this long, whichever comes first (a hopping radio hears fewer)
MIN_READINGS = 50  # a window of fewer readings says too little and teaches nothing
KEEP = 72  # windows (6 h of an occupied room)
MIN_WINDOWS = 2
DEAD_BAND_DB = 3.0
MAX_SENSORS = 256
_LOW, _HIGH = -120, 0
_BINS = _HIGH - _LOW + 1


class _Sensor(Snapshotted):
    __slots__ = ("accepted", "hist", "last", "n", "offset", "window")

    def __init__(self, window: float) -> None:
        self.window = window  # start of the current window
        self.hist = [0] * _BINS
        self.n = 0
        self.accepted: deque[float] = deque(maxlen=KEEP)
        self.offset = 0.0
        self.last = math.inf  # the last closed window's p90 (-inf: too few readings)

    def __setstate__(self, state: object) -> None:
        attrs = restored(state)
        super().__setstate__(attrs)
        if "last" not in attrs:  # a snapshot older than the empty-store rule: not known
            self.last = math.inf


def p90(hist: list[int], n: int) -> float:
    """The 90th percentile of a 1 dB histogram of n readings (its top 10 % start here)."""
    need = n - int(0.9 * n)  # readings at or above the percentile
    seen = 0
    for i in range(_BINS - 1, -1, -1):
        seen += hist[i]
        if seen >= need:
            return float(i + _LOW)
    return float(_LOW)


class PlacementLearner(Snapshotted):
    """observe(sensor, rssi, ts) -> the offset (dB) to add to that sensor's readings."""

    def __init__(self, reference_p90: float = -51.0, max_offset_db: float = 9.0) -> None:
        self.reference = reference_p90
        self.max_offset = max_offset_db
        self.enabled = max_offset_db > 0  # read per Wi-Fi observation: a field, not a property
        self._sensors: dict[str, _Sensor] = {}

    def configure(self, reference_p90: float, max_offset_db: float) -> None:
        """New settings for a running learner: what was learnt of each sensor stays."""
        self.reference = reference_p90
        self.max_offset = max_offset_db
        self.enabled = max_offset_db > 0

    def offsets(self) -> dict[str, float]:
        """The current offset of every sensor learnt so far (for status and tests)."""
        return {k: s.offset for k, s in self._sensors.items()}

    def unsure(self, configured: Iterable[str] = ()) -> frozenset[str]:
        """The sensors whose scale is not known yet: no window has been accepted and the one
        still open does not qualify either (a busy store's first minutes end it before its
        first window closes)."""
        return self.states(dict.fromkeys(configured, 0.0))[0]

    def states(self, configured: Mapping[str, float]) -> tuple[frozenset[str], frozenset[str]]:
        """(unsure, empty): the sensors whose scale is not known yet (`unsure`), and those
        whose scale is known (learnt, or a walk test's offset in `configured`) whose store
        looks empty now (see the module docstring). Read once per footfall interval."""
        if not self.enabled:
            return frozenset(), frozenset()
        unsure, empty = [], []
        floor = self.reference - self.max_offset  # an occupied store's p90 is above this
        for key, st in self._sensors.items():
            level = p90(st.hist, st.n) if st.n >= MIN_READINGS else -math.inf
            off = configured.get(key)
            if off is None and not st.accepted:
                if abs(level - self.reference) > self.max_offset:
                    unsure.append(key)
            elif max(st.last, level) + (st.offset if off is None else off) < floor:
                empty.append(key)
        return frozenset(unsure), frozenset(empty)

    def describe(self, configured: Mapping[str, float]) -> dict[str, dict[str, object]]:
        """Each Wi-Fi sensor's placement for the gateway's stats: its offset (dB added to its
        readings) and where it comes from: "configured" (a walk test), "learnt", or
        "learning" (not applied yet; `cautious` while its scale is unknown)."""
        unsure = self.states(configured)[0]
        out: dict[str, dict[str, object]] = {
            k: {"offset_db": v, "source": "configured", "cautious": False}
            for k, v in configured.items()}
        for key, st in self._sensors.items():
            if key not in out:
                learnt = len(st.accepted) >= MIN_WINDOWS
                out[key] = {"offset_db": st.offset, "source": "learnt" if learnt else "learning",
                            "cautious": key in unsure}
        return out

    def observe(self, sensor: str, rssi: float, ts: float) -> float:
        st = self._sensors.get(sensor)
        if st is None:
            if len(self._sensors) >= MAX_SENSORS:
                return 0.0
            st = self._sensors[sensor] = _Sensor(ts)
        if st.n >= WINDOW_READINGS or ts >= st.window + WINDOW_S:
            self._close(st)
            st.window = ts
        i = int(rssi) - _LOW  # radios report whole dBm
        if not 0 <= i < _BINS:
            i = 0 if i < 0 else _BINS - 1
        st.hist[i] += 1
        st.n += 1
        return st.offset

    def _close(self, st: _Sensor) -> None:
        st.last = -math.inf
        if st.n >= MIN_READINGS:
            level = st.last = p90(st.hist, st.n)
            if abs(level - self.reference) <= self.max_offset:
                st.accepted.append(level)
        st.hist = [0] * _BINS
        st.n = 0
        if len(st.accepted) >= MIN_WINDOWS:
            ordered = sorted(st.accepted)
            k = len(ordered)
            median = (ordered[k // 2] + ordered[(k - 1) // 2]) / 2.0
            off = float(round(self.reference - median))
            st.offset = 0.0 if abs(off) < DEAD_BAND_DB else off
