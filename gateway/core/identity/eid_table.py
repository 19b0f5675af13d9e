"""Eddystone-EID lookup of the identity index: the current EIDs of every registered beacon.

Kept apart from core/identity/index.py (the `IdentityIndex` holds one `EidTable`) so the index
module stays small; the EID itself is core/identity/resolve.py `eid`.

Invariants:
- A lookup answers only EIDs of the rotation periods p-tol..p+tol around the sighting's own
  time (each beacon's clock offset applied), so replay in capture time gives the same answers
  as live.
- An EID that two registered beacons share in those periods is ambiguous and answers None.
- Pure: no clock, no I/O; the table is rebuilt from the sighting times it is given.
"""

from __future__ import annotations

from collections.abc import Mapping

from presence_gateway.core.identity.resolve import eid


class EidTable:
    """Current EIDs (rotation periods p-tol..p+tol) of every registered beacon -> entry id.

    Rebuilt only when a sighting's time leaves the interval in which every beacon's current
    period is unchanged, so a lookup is one comparison and one dict access.
    """

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self._beacons: dict[str, tuple[bytes, int, int]] = {}
        self._table: dict[str, str] = {}
        self._lo = float("inf")
        self._hi = float("-inf")

    def __len__(self) -> int:
        return len(self._beacons)

    def set(self, beacons: Mapping[str, tuple[bytes, int, int]]) -> None:
        self._beacons = dict(beacons)
        self._lo, self._hi = float("inf"), float("-inf")

    def resolve(self, eid_hex: str, ts: float) -> str | None:
        if not self._beacons:
            return None
        if not self._lo <= ts < self._hi:
            self._rebuild(ts)
        hit = self._table.get(eid_hex)
        return hit or None  # "" marks an EID two beacons share: ambiguous

    def _rebuild(self, ts: float) -> None:
        table: dict[str, str] = {}
        lo, hi = float("-inf"), float("inf")
        for entry_id, (key, k, offset) in self._beacons.items():
            beacon_time = int(ts) - offset
            period = 1 << k
            start = beacon_time - beacon_time % period
            for i in range(-self.tolerance, self.tolerance + 1):
                t = start + i * period
                if t < 0:
                    continue
                e = eid(key, k, t).hex()
                table[e] = "" if table.get(e, entry_id) != entry_id else entry_id
            lo, hi = max(lo, start + offset), min(hi, start + period + offset)
        self._table, self._lo, self._hi = table, lo, hi
