"""The dwell of a hopping radio, read from a recording: how long it stays on a channel.

A live radio's plan comes with its dwell (drivers/wifi_monitor.py); a recording gives only
the channels its frames were tagged with (hopping.py `PlanInference`). The dwell matters
because a phone's scan visits channel 1, 2, 3, ... about 20 ms each, and a radio that leaves
a channel before the scan reaches the plan's next one misses the whole burst
(`hopping.sweep_catch`: 0.68 at 10 x 50 ms, 0.94 at 10 x 250 ms). Taken as 1 when unknown,
the engine reads the Brno ESP32 sniffer's own scan (channels 1-10, 50 ms each, 100 ms on 10:
its firmware's `vTaskDelay(5)` at 100 Hz) as if it caught every sweep.

The model: a radio switches channel every `d` seconds, and a frame arrives at no particular
phase of its dwell, so two consecutive frames (any devices) `g` apart carry different channel
tags with probability g / d while g < d (a switch fell between them). Over the pairs with
g < G <= d, d = sum(g) / (pairs with different tags); for G > d the estimate falls below G
(most such pairs straddle a switch), so the dwell is the estimate at the largest G it is
still above. Measured on the hopping variants of the Brno days (bench/radio_variants.py,
after the burst throttle, as the engine sees them): 3 x 250 ms reads 0.24-0.27 s, 3 x 1 s
1.00-1.03, 10 x 250 ms 0.24-0.26, 10 x 100 ms 0.08-0.10, the ESP32 scan (mean 55 ms)
0.04-0.05. A capture where every close pair switches (the real hopping day 04-17: three
devices, one climbing the channels with the radio) passes no G: the dwell stays unknown.

Pure; per sensor one histogram of gaps (BINS slots), and nothing after it settles.
"""

from __future__ import annotations

import math

from presence_gateway.core.state import Snapshotted

# Gaps are binned on a log scale from _LO (5 ms) to _LO * _RATIO ** BINS (~10 s); a longer gap
# says nothing about a dwell (a dwell longer than that is a fixed radio for counting).
BINS = 60
_LO = 0.005
_RATIO = (10.0 / _LO) ** (1.0 / BINS)
_LOG_RATIO = math.log(_RATIO)
_UPPER = tuple(_LO * _RATIO ** k for k in range(BINS))  # bin k holds gaps up to _UPPER[k]
_MAX_GAP = _LO * _RATIO ** BINS
# The estimate is taken every _EVERY pairs, used once MIN_SWITCHES tag changes stand behind
# it, and settled (learning stops) at SETTLE_SWITCHES. Until then it is read long by one
# standard error (1 / sqrt(switches)): a short dwell means a low catch, a long stretch of
# every window, and on a sparse day (02-16 through the ESP32 scan: ~30 frames a minute) the
# first estimate, from 10-20 switches, came out as low as 26 ms for 50 ms; erring long errs
# towards the engine as it was without a dwell.
_EVERY = 32
MIN_SWITCHES = 10
SETTLE_SWITCHES = 200


class DwellInference(Snapshotted):
    """observe(ts, channel) per frame of one sensor -> the dwell in seconds when a new
    estimate is ready (else None); `settled` once it has enough evidence."""

    __slots__ = ("_gaps", "_last_ch", "_last_ts", "_pairs", "_switches", "settled")

    def __init__(self) -> None:
        self._gaps = [0.0] * BINS  # the summed gaps of the pairs in each gap bin
        self._switches = [0] * BINS  # of them, pairs with different tags
        self._last_ts: float | None = None
        self._last_ch = 0
        self._pairs = 0  # pairs binned
        self.settled = False

    def observe(self, ts: float, channel: int) -> float | None:
        last, prev = self._last_ts, self._last_ch
        self._last_ts, self._last_ch = ts, channel
        if last is None:
            return None
        g = ts - last
        if not 0.0 <= g < _MAX_GAP:
            return None  # out of order, or a silence
        k = 0 if g <= _LO else min(BINS - 1, int(math.log(g / _LO) / _LOG_RATIO) + 1)
        self._gaps[k] += g
        if channel != prev:
            self._switches[k] += 1
        self._pairs += 1
        if self._pairs % _EVERY:
            return None
        return self.estimate()

    def estimate(self) -> float | None:
        """The dwell, or None while fewer than MIN_SWITCHES tag changes back it."""
        best: tuple[float, int] | None = None
        gaps, switches = 0.0, 0
        for k in range(BINS):  # every pair summed so far is shorter than _UPPER[k]
            gaps += self._gaps[k]
            switches += self._switches[k]
            if switches and gaps / switches >= _UPPER[k]:
                best = (gaps / switches, switches)
        if best is None or best[1] < MIN_SWITCHES:
            return None
        if best[1] >= SETTLE_SWITCHES:
            self.settled = True
            return best[0]
        return best[0] * (1.0 + 1.0 / math.sqrt(best[1]))
