"""Per-device throttling of repeated BLE adverts, before anything else is spent on them.

A beacon or phone advertising the same payload at 10 Hz says nothing new nine times a second.
An advert passes when its device has not been passed for `interval_s`, when its payload or
kind changed, or when its RSSI moved by at least `rssi_step_db` (so the tracker still sees
movement). Everything else is dropped and counted before the privacy boundary, the tracker
or the outbox spend anything on it.

Invariants: pure; keyed by the raw address only inside the driver boundary (the key never
leaves this object); memory bounded by `max_devices` (entries older than the interval are
swept, and the table is cleared if a flood of addresses still fills it).
"""

from __future__ import annotations

from dataclasses import dataclass

from presence_gateway.core.model import Radio, Sighting


@dataclass(slots=True)
class ThrottleStats:
    passed: int = 0
    dropped: int = 0


class AdvertThrottle:
    def __init__(self, interval_s: float = 1.0, rssi_step_db: float = 6.0,
                 max_devices: int = 50_000) -> None:
        self.interval_s = interval_s
        self.rssi_step_db = rssi_step_db
        self.max_devices = max_devices
        # (address, kind) -> (last passed ts, its fields object, rssi)
        self._last: dict[tuple[bytes, str], tuple[float, object, int | None]] = {}
        self._sweep_at = 0.0
        self.stats = ThrottleStats()

    def admit(self, s: Sighting) -> bool:
        if s.radio is not Radio.BLE or self.interval_s <= 0:
            return True
        key = (s.address, s.kind)
        # The decoders memoise by content, so an unchanged payload yields the same fields
        # object: `is` is a free "unchanged" test (a cache miss only lets an advert through).
        content = s.fields
        prev = self._last.get(key)
        if prev is not None:
            ts, seen, rssi = prev
            if (s.ts - ts < self.interval_s and seen is content and
                    (rssi is None or s.rssi is None or abs(s.rssi - rssi) < self.rssi_step_db)):
                self.stats.dropped += 1
                return False
        if s.ts >= self._sweep_at or len(self._last) >= self.max_devices:
            self._sweep(s.ts)
        self._last[key] = (s.ts, content, s.rssi)
        self.stats.passed += 1
        return True

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + max(self.interval_s, 1.0) * 10
        horizon = now - self.interval_s
        stale = [k for k, v in self._last.items() if v[0] < horizon]
        for k in stale:
            del self._last[k]
        if len(self._last) >= self.max_devices:
            self._last.clear()
