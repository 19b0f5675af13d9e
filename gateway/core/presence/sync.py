"""Several gateways in one store: compact per-device summaries and who owns which device.

Each gateway publishes `summary()` on the store's sync topic and applies its peers' summaries
with `apply()`. Device keys are comparable across a store's gateways because they share the
store-wide privacy secret (privacy.py).

Invariants:
- With no peer summary applied, this gateway owns every device (single-gateway fast path).
- Ownership is `tracker.arbitrate` over this gateway's smoothed reading and the peers' last
  readings: strongest signal wins, ties by gateway id, the current owner keeps the device until
  beaten by the stickiness margin. Every gateway runs the same rule on (nearly) the same
  numbers, so they agree without a central server; during a summary's flight they may disagree
  for one summary interval, which shows as a late zone hand-over, never as a second visit id,
  because a gateway that takes over adopts the visit id and first_seen its peer published.
- Memory: a peer's readings are replaced wholesale by its next summary and dropped when older
  than the stale horizon, so the tables are bounded by what the peers themselves hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from presence_gateway.core.presence.tracker import PeerReading, arbitrate

if TYPE_CHECKING:
    from presence_gateway.core.presence.units import Unit


class Peers:
    def __init__(self, gateway_id: str, margin_db: float, stale_s: float) -> None:
        self.gateway_id = gateway_id
        self.margin_db = margin_db
        self.stale_s = stale_s
        self.active = False
        self._readings: dict[str, dict[str, PeerReading]] = {}  # gateway -> device -> reading
        # gateway -> device -> (visit id, first_seen, announced)
        self._visits: dict[str, dict[str, tuple[str, float, bool]]] = {}
        self._received: dict[str, float] = {}
        self._owner: dict[str, str] = {}
        self.dirty: set[str] = set()

    def summary(self, units: Iterable[Unit], now: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for u in sorted(units, key=_key):
            if u.visit is None or now - u.last > self.stale_s:
                continue
            out.append({"device": u.key, "rssi": round(u.x, 1), "last_seen": u.last,
                        "gateway": self.gateway_id, "visit_id": u.visit,
                        "first_seen": u.first, "announced": u.announced})
        return out

    def apply(self, gateway_id: str, items: Iterable[Mapping[str, Any]], now: float,
              known: Mapping[str, Unit]) -> None:
        if gateway_id == self.gateway_id:
            return
        readings: dict[str, PeerReading] = {}
        visits: dict[str, tuple[str, float, bool]] = {}
        for it in items:
            try:
                key = str(it["device"])
                readings[key] = PeerReading(gateway_id, float(it["rssi"]),
                                            float(it["last_seen"]))
                if it.get("visit_id"):
                    visits[key] = (str(it["visit_id"]), float(it["first_seen"]),
                                   bool(it.get("announced", True)))
            except (KeyError, TypeError, ValueError):
                continue  # a malformed line from a peer is skipped, not fatal
        old = self._readings.get(gateway_id, {})
        self._readings[gateway_id] = readings
        self._visits[gateway_id] = visits
        self._received[gateway_id] = now
        self.active = True
        # Devices whose owner may have changed are re-examined at the next tick.
        self.dirty.update(k for k in readings.keys() | old.keys() if k in known)
        for gw in [g for g, t in self._received.items() if now - t > self.stale_s]:
            del self._readings[gw], self._visits[gw], self._received[gw]

    def visit_of(self, key: str) -> tuple[str, float, bool] | None:
        """A visit a peer already opened for this device: (visit id, first_seen, announced)."""
        found = [v for gw in sorted(self._visits) if (v := self._visits[gw].get(key))]
        if not found:
            return None
        vid, first, _ = min(found, key=lambda v: (v[1], v[0]))  # the rule _recheck adopts by
        # Announced if ANY peer announced this visit id: the one that did may sort later.
        return vid, first, any(v[0] == vid and v[2] for v in found)

    def owner(self, u: Unit, now: float) -> str:
        if not self.active:
            return self.gateway_id
        readings = {self.gateway_id: PeerReading(self.gateway_id, u.x, u.last)}
        for gw, table in self._readings.items():
            r = table.get(u.key)
            if r is not None:
                readings[gw] = r
        if len(readings) == 1:
            return self.gateway_id
        prev = self._owner.get(u.key)
        owner = arbitrate(readings, prev, now, self.margin_db, self.stale_s) or self.gateway_id
        self._owner[u.key] = owner
        return owner

    def owns(self, u: Unit, now: float) -> bool:
        return not self.active or self.owner(u, now) == self.gateway_id

    def closes(self, u: Unit) -> bool:
        """The last gateway to have seen a device closes its visit (ties: lowest id)."""
        if not self.active:
            return True
        for gw, table in self._readings.items():
            r = table.get(u.key)
            if r is not None and (r.last_seen > u.last or
                                  (r.last_seen == u.last and gw < self.gateway_id)):
                return False
        return True

    def forget(self, key: str) -> None:
        self._owner.pop(key, None)


def _key(u: Unit) -> str:
    return u.key
