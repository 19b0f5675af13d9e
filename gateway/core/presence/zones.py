"""Zone steps of the presence engine: which zone a unit is in, entries, exits, dwell marks.

A mixin of `PresenceEngine` (core/presence/sessions.py), kept apart so the engine module stays
readable; the hysteresis model is core/presence/tracker.py `choose_zone`, the invariants are
the engine's (pure, deterministic, events only from the owning gateway).
"""

from __future__ import annotations

from presence_gateway.core.events import Event, ZoneDwell, ZoneEntered, ZoneExited
from presence_gateway.core.model import Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.footfall import Footfall
from presence_gateway.core.presence.tracker import (
    INF,
    Zone,
    choose_zone,
    distance_m,
    proximity,
)
from presence_gateway.core.presence.units import Unit
from presence_gateway.core.state import Snapshotted


class ZoneSteps(Snapshotted):
    """Zone decisions and their events for a unit; the engine provides the state below."""

    s: PresenceSettings
    footfall: Footfall
    _zones_ble: tuple[Zone, ...]
    _zones_wifi: tuple[Zone, ...]

    def _zones_for(self, u: Unit) -> tuple[Zone, ...]:
        return self._zones_wifi if u.radio is Radio.WIFI else self._zones_ble

    def _zone_step(self, u: Unit, ts: float, out: list[Event]) -> None:
        cand, u.lo, u.hi = choose_zone(self._zones_for(u), u.zone, u.x, u.sensor)
        if cand is u.zone:
            u.cand, u.cand_due = u.zone, INF
            return
        if cand is not u.cand:
            confirm = (cand or u.zone)
            u.cand = cand
            u.cand_due = ts + (confirm.min_confirm_s if confirm is not None else 0.0)
        if ts < u.cand_due:
            return
        if u.zone is not None:
            self._exit_zone(u, ts, out)
        u.cand_due = INF
        if cand is not None:
            self._enter_zone(u, cand, ts, out)
        u.decide_zone_again()  # against the new current zone, at the next reading

    def _enter_zone(self, u: Unit, z: Zone, ts: float, out: list[Event]) -> None:
        u.zone, u.zone_since, u.mark_i = z, ts, 0
        u.path += (z.name,)  # a tuple: most visits enter one zone (a list was 5 MB at 100k)
        marks = self.s.dwell_marks_s
        u.next_mark = ts + marks[0] if marks else INF
        if u.person and not u.fixture:
            self.footfall.zone_entry(z.name)
        if u.owned:
            ref = self.s.ref_power_wifi if u.radio is Radio.WIFI else self.s.ref_power_ble
            d = distance_m(u.x, u.ref if u.ref is not None else ref, z.exponent)
            assert u.visit is not None
            out.append(ZoneEntered(
                time=ts, visit_id=u.visit, device=u.key, zone=z.name, rssi=round(u.x, 1),
                distance_m=round(d, 2), proximity=proximity(d)))

    def _exit_zone(self, u: Unit, ts: float, out: list[Event]) -> None:
        z = u.zone
        if z is None:
            return
        last = min(ts, u.last) if ts > u.last else ts
        dwell = max(0.0, last - u.zone_since)
        u.dwell += dwell
        u.zone, u.next_mark = None, INF
        if u.person and not u.fixture:
            self.footfall.zone_exit(z.name, dwell)
        if u.owned:
            assert u.visit is not None
            out.append(ZoneExited(time=ts, visit_id=u.visit, device=u.key, zone=z.name,
                                  dwell_s=round(dwell, 3)))

    def _marks(self, u: Unit, ts: float, out: list[Event]) -> None:
        marks = self.s.dwell_marks_s
        z = u.zone
        while z is not None and u.next_mark <= ts:
            if u.owned:
                assert u.visit is not None
                out.append(ZoneDwell(time=u.next_mark, visit_id=u.visit, device=u.key,
                                     zone=z.name, dwell_s=marks[u.mark_i]))
            u.mark_i += 1
            u.next_mark = u.zone_since + marks[u.mark_i] if u.mark_i < len(marks) else INF
