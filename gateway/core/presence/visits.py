"""Visit steps of the presence engine: a visit starts, is announced, changes owner, walks in
or becomes a fixture, and ends (with its counts in footfall and its `visit.ended`).

A mixin of `PresenceEngine` (core/presence/sessions.py), kept apart so the engine module stays
small, as `ZoneSteps` (core/presence/zones.py) is; the invariants are the engine's (pure,
deterministic, events only from the owning gateway).
"""

from __future__ import annotations

import hashlib

from presence_gateway.core.events import Event, VisitEnded, VisitStarted
from presence_gateway.core.model import Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.footfall import Footfall
from presence_gateway.core.presence.sync import Peers
from presence_gateway.core.presence.tracker import INF
from presence_gateway.core.presence.units import Unit
from presence_gateway.core.presence.wheel import ExpiryWheel, deadline
from presence_gateway.core.presence.zones import ZoneSteps


def visit_id(key: str, first_seen: float) -> str:
    return hashlib.blake2b(f"{key}|{first_seen:.6f}".encode(), digest_size=8).hexdigest()


class VisitSteps(ZoneSteps):
    """Visit lifecycle for a unit (zone exits through ZoneSteps); the engine provides the
    state below."""

    s: PresenceSettings
    footfall: Footfall
    peers: Peers
    _started: float
    _fixtures: set[str]
    _wheel: ExpiryWheel
    _horizon: float
    # Visits that walked in since the visit gate last looked (None: nobody listens).
    walkins: list[str] | None

    def _start_visit(self, u: Unit, out: list[Event]) -> None:
        adopted = self.peers.visit_of(u.key) if self.peers.active else None
        if adopted is not None:
            u.visit, first, u.announced = adopted
            u.first = min(first, u.first)
        else:
            u.visit, u.announced = visit_id(u.key, u.first), False
        u.decide_zone_again()  # decide the zone now
        # an open visit ends at its timeout, which may come before the horizon (wheel.py)
        self._wheel.sooner(u, deadline(u, self._horizon, self.s.visit_timeout_s))
        if self.peers.active:
            # Hold the new visit for two summary rounds: by then every gateway that sees the
            # device has published it, so they arbitrate on the same numbers and one announces.
            u.owned = False
            u.hold = u.last + 2.0 * self.s.summary_interval_s
            return
        self._announce(u, u.last, out)

    def _announce(self, u: Unit, ts: float, out: list[Event]) -> None:
        """visit.started, once per visit, by the first gateway that owns it."""
        if u.announced or not u.owned or u.visit is None:
            return
        u.announced = True
        out.append(VisitStarted(
            time=ts, visit_id=u.visit, device=u.key, radio=u.radio.value, first_seen=u.first,
            observations=u.count, rssi=round(u.x, 1)))

    def _ownership(self, u: Unit, ts: float, out: list[Event]) -> None:
        owned = ts >= u.hold and self.peers.owns(u, ts)
        if owned == u.owned or u.visit is None:
            u.owned = owned
            return
        if not owned:
            # Hand-over: this gateway's last act is leaving its zone; the new owner enters its.
            self._exit_zone(u, ts, out)
            u.cand, u.cand_due = None, INF
            u.owned = False
        else:
            u.owned = True
            self._announce(u, ts, out)
            u.decide_zone_again()

    def _check_walkin(self, u: Unit, ts: float, out: list[Event]) -> bool:
        """Walk-in and fixture rules; True when the visit was ended (a fixture)."""
        s = self.s
        if ts - u.first + u.day_present > u.limit:
            self._make_fixture(u, ts, out)
            return True
        # min_sightings strong readings (at the unit's catch probability): one strong frame
        # may be a reflection; in the cold start one is enough (checked last: it is rare)
        if u.walkin or (u.strong < u.evidence(self.s.min_sightings) and not (
                u.strong and self._cold_one(u, ts))):
            return False
        # Strong on min_sightings readings: inside now, so it counts in `present` at once.
        # Whether it was a visit (an entry) or a passer-by is decided by walk_in.min_time.
        if ts - u.first >= s.walkin_count_s:
            u.inside = True
        if ts - u.first >= s.walkin_min_s:
            u.walkin = u.inside = True
            if u.person:
                self.footfall.entry()
        elif u.first - self._started < s.walkin_min_s * u.stretch:
            # Cold start: a device heard from the gateway's first minutes may have been inside
            # before it started (a reboot in an open store); it counts in `present` at once,
            # but it is no entry: nobody saw it come in. "First minutes" at the unit's catch
            # probability: under a channel plan a device inside is first heard 1 / p later.
            u.walkin = u.inside = True
        if u.walkin and self.walkins is not None and u.visit is not None:
            self.walkins.append(u.visit)
        return False

    def _cold_one(self, u: Unit, ts: float) -> bool:
        """Within the cold-start window (`walk_in.min_time` of the start) one strong reading
        is evidence enough for a Wi-Fi unit (population.py "Cold start"): the people inside at
        a start were there before it, and a phone probing every minute or two is heard only
        once in the first minutes. Its weight in `present` stands for those not heard yet."""
        return u.radio is Radio.WIFI and ts - self._started < self.s.walkin_min_s

    def _make_fixture(self, u: Unit, ts: float, out: list[Event]) -> None:
        """Present too long today: staff or a fixture. The visit ends now; no more today."""
        self._fixtures.add(u.key)
        u.fixture = True
        self._end_visit(u, out, at=ts, reason="fixture")

    def _end_visit(self, u: Unit, out: list[Event], *, at: float | None = None,
                   reason: str = "timeout") -> None:
        if u.visit is None:
            return
        end = u.last + self.s.visit_timeout_s * u.stretch if at is None else at
        if u.zone is not None:
            self._exit_zone(u, end, out)
        duration = u.last - u.first
        u.day_present += duration
        kind = "fixture" if u.fixture else "visitor" if u.walkin else "passer_by"
        if u.person and not u.fixture:
            if u.walkin:
                self.footfall.exit(duration)
            else:
                self.footfall.passer_by()
        if u.announced and self.peers.closes(u):
            out.append(VisitEnded(
                time=end, visit_id=u.visit, device=u.key, radio=u.radio.value,
                first_seen=u.first, last_seen=u.last, duration_s=round(duration, 3),
                observations=u.count, zones=tuple(u.path), dwell_s=round(u.dwell, 3),
                classification=kind, reason=reason, max_rssi=round(u.max_x, 1)))
        u.visit = None
        u.inside = False
