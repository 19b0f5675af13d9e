"""Visits: started / zone entered / dwell / zone exited / ended; footfall; several gateways.

Invariants:
- Pure and deterministic: the output depends only on the observations, the `now` values given
  to `tick` and the peer summaries applied. Event times are derived from capture times (a visit
  ends at last_seen + visit_timeout, a dwell mark at zone entry + mark), never from the moment
  a tick happened to run, and `visit_id` is a hash of the unit key and first_seen.
- A *unit* is what a visit is about: the device key, except for Wi-Fi devices with random
  addresses, which are grouped by the fingerprint grouper (one phone, many addresses). Event
  `data.device` is the unit key (a device key or a group key; both pseudonymous).
- A unit counts as present only after `min_sightings` within `sighting_window`; fixtures
  (listed, or present longer than `fixture_max_presence` in a day) never start visits.
- Memory is bounded: units live in a dict by key and, for expiry, in a timing wheel of
  one-second buckets by deadline, filed lazily (core/presence/wheel.py): a reading moves
  nothing, `tick` looks at the buckets whose second has passed, so expiry costs O(expired +
  refiled) and nothing grows with the crowd; the size is capped by `max_devices` (the
  earliest deadline goes first).
- Bounded batches: one `tick` call ends at most `expire_batch` units; when more are due it
  stops there (`backlog` is True) and the next call at the same `now` carries on, before any
  later footfall boundary, so the events are the same as in one call, only split. A mass
  visit end (closing time, a clock jump, the end of a replay) never builds all its events in
  one list.
- Only the gateway that owns a device (see tracker.arbitrate) emits its visit and zone events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from presence_gateway.core.events import Event, FootfallCounted, OccupancyChanged
from presence_gateway.core.model import AddressKind, Observation, Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.footfall import Footfall, occupancy_states
from presence_gateway.core.presence.hopping import ChannelPlan, RadioPlans, channel_bit
from presence_gateway.core.presence.placement import PlacementLearner
from presence_gateway.core.presence.population import present
from presence_gateway.core.presence.sync import Peers
from presence_gateway.core.presence.tracker import INF, resolve_zones
from presence_gateway.core.presence.units import (
    Grouper,
    Unit,
    beacon_ref_power,
    default_grouper,
    is_person,
)
from presence_gateway.core.presence.visits import VisitSteps
from presence_gateway.core.presence.wheel import ExpiryWheel, deadline
from presence_gateway.core.state import attributes

_DAY = 86400.0
# Units one tick call may end: each gives at most a zone exit and a visit end, so a call returns
# about 2,000 events (a few MB as messages) however many visits end together.
EXPIRE_BATCH = 1000


class PresenceEngine(VisitSteps):
    def __init__(self, settings: PresenceSettings, *, gateway_id: str, store_id: str,
                 grouper: Grouper | None = None, plan: ChannelPlan | None = None) -> None:
        s = settings
        self.s = settings
        self.gateway_id = gateway_id
        self.store_id = store_id
        self.grouper = grouper if grouper is not None else default_grouper()
        self._zones_ble = resolve_zones(s.zones, s.ref_power_ble)
        self._zones_wifi = resolve_zones(s.zones, s.ref_power_wifi)
        self._units: dict[str, Unit] = {}
        self._wheel = ExpiryWheel()  # when each unit is due (see the invariants)
        self._offsets = dict(s.rssi_offsets)  # empty (falsy) unless calibrated
        # Learnt per-sensor offsets for the sensors not calibrated (core/presence/placement)
        self._placement = PlacementLearner(s.placement_reference_p90, s.placement_max_offset_db)
        self._dormant: dict[str, float] = {}  # unit key -> presence seconds today (long stays)
        self._fixtures: set[str] = set()  # auto-detected today
        # The Wi-Fi channel plan (core/presence/hopping.py): given by a live radio, learnt
        # per sensor from the frames' channels for a recording. Windows stretch by 1 / p per
        # unit.
        self._plans = RadioPlans(plan)
        self._horizon = 0.0
        self._set_horizon()
        self._sigma = s.kalman_measurement_noise ** 0.5  # dB: the spread of one reading
        self._q, self._r, self._out = (s.kalman_process_noise, s.kalman_measurement_noise,
                                       s.outlier_db)
        self.footfall = Footfall(tuple(z.name for z in s.zones), s.people_per_device,
                                 smoothing=round(s.footfall_smoothing_s / s.footfall_interval_s))
        self.peers = Peers(gateway_id, s.stickiness_margin_db, s.visit_timeout_s)
        self._next_footfall: float | None = None
        self._last_state: dict[str, dict[str, Any]] = {}
        self._day = -1
        self._started = INF  # capture time of the first observation (cold-start rule)
        self.evicted = 0
        self.expire_batch = EXPIRE_BATCH
        self._budget = 0  # units this tick call may still end (see expire_batch)
        self.backlog = False  # the last tick stopped at expire_batch: call it again
        # Visits that walked in since the visit gate last looked (None: nobody listens).
        self.walkins: list[str] | None = None

    # -- hot path -------------------------------------------------------------------------
    @property
    def tracked(self) -> int:
        """Devices (units) currently tracked."""
        return len(self._units)

    # The state a running engine keeps across new settings (`reconfigure`); everything else
    # (resolved zones, noise constants, footfall's zone table, horizons) follows the settings.
    _KEPT: ClassVar[frozenset[str]] = frozenset({
        "_units", "_dormant", "_fixtures", "_next_footfall", "_last_state", "_day", "_started",
        "evicted", "peers", "grouper", "expire_batch", "backlog", "walkins", "_plans",
        "_placement"})

    def reconfigure(self, settings: PresenceSettings, now: float) -> list[Event]:
        """Apply new settings (zones, thresholds, timings) to a running engine: open visits
        stay open; a device in a zone that no longer exists leaves it now (ZoneExited); the
        others keep their zone and are judged again on the next reading with the new
        thresholds; the day's counts carry over (per zone for the zones that remain)."""
        fresh = PresenceEngine(settings, gateway_id=self.gateway_id, store_id=self.store_id,
                               grouper=self.grouper, plan=self._plans.given)
        out: list[Event] = []
        for u in self._units.values():
            if u.zone is not None:
                pool = fresh._zones_wifi if u.radio is Radio.WIFI else fresh._zones_ble
                same = next((z for z in pool if z.name == u.zone.name), None)
                if same is None:
                    self._exit_zone(u, now, out)
                else:
                    u.zone = same
            u.decide_zone_again()
        old = self.footfall
        kept = {k: v for k, v in attributes(self).items() if k in self._KEPT}
        for name, value in (attributes(fresh) | kept).items():
            setattr(self, name, value)  # no vars(): a compiled engine has no __dict__
        self._set_horizon()
        # deadlines under the new timings (a shorter timeout is an earlier deadline)
        self._wheel.rebuild(self._units.values(), self._horizon, settings.visit_timeout_s)
        self.footfall.carry_over(old)
        # what was learnt of each sensor stays; the rule's parameters are the new settings'
        self._placement.configure(settings.placement_reference_p90,
                                  settings.placement_max_offset_db)
        return out

    def adopt(self, frozen: PresenceEngine, day: bool = True) -> None:
        """Take over a frozen engine's state (core/continuity.py): with `day`, units, visits,
        zones, the day's counters (same settings); else what was learnt of the sensors only."""
        state = attributes(frozen)
        state.pop("s", None)
        if self._plans.given is not None or "_plans" not in state:
            state.pop("_plans", None)  # a live radio's plan wins; a learnt one carries on
        if not day:  # placement offsets and channel plans are the radios', not the day's
            state = {k: v for k, v in state.items() if k in ("_plans", "_placement")}
        for name, value in state.items():
            setattr(self, name, value)
        self._placement.configure(self.s.placement_reference_p90,
                                  self.s.placement_max_offset_db)  # (the settings may differ)
        self._set_horizon()
        if not day:
            return
        # An older version's snapshot holds its units in last-sighting order and no wheel (and
        # no batch settings; its units take this layout as unpickled, Unit.__setstate__).
        self._units = dict(self._units)
        if "_wheel" not in state:
            self._wheel = ExpiryWheel()
            self._wheel.rebuild(self._units.values(), self._horizon, self.s.visit_timeout_s)
        self.expire_batch = getattr(frozen, "expire_batch", EXPIRE_BATCH)
        self._budget = 0
        self.backlog = getattr(frozen, "backlog", False)

    def feed(self, obs: Observation) -> list[Event]:
        ts = obs.ts
        key = obs.device
        if ts < self._started:
            self._started = ts
        if obs.radio is Radio.WIFI and obs.address_kind is not AddressKind.PUBLIC:
            key = self.grouper.observe(obs)
        units = self._units
        u = units.get(key)
        out: list[Event] = []
        if u is None:
            u = units[key] = self._new_unit(key, obs)
            self._wheel.file(u, ts + self._horizon)
        else:
            st = u.stretch  # 1 / p under a channel plan (1.0 on a fixed channel)
            if ts - u.last >= self.s.visit_timeout_s * st and u.visit is not None:
                self._end_visit(u, out)
                u.reset(ts)
            elif ts - u.last >= self.s.sighting_window_s * st and u.visit is None \
                    and not (u.inside and ts - u.last < self.s.visit_timeout_s * st):
                # (A unit counted on one reading at a cold start keeps it until its second
                # one, up to the visit timeout: a phone probing every 2-5 min never has two
                # within sighting_window and would drop out of `present` again.)
                u.reset(ts)
        if obs.radio is Radio.WIFI:
            sp = self._plans.heard(obs.sensor or self.gateway_id, obs.channel, ts)
            if sp.size > 1:
                if sp.size * self._base_horizon > self._horizon:
                    self._set_horizon()
                before = u.stretch
                u.hopped(channel_bit(obs.channel), ts, sp.catch, self._sigma)
                if u.stretch < before and u.visit is not None:  # its timeout came nearer
                    self._wheel.sooner(u, deadline(u, self._horizon, self.s.visit_timeout_s))
        if len(units) > self.s.max_devices:
            self._evict(out)
        rssi: float | None = obs.rssi
        if rssi is not None:
            # A driver without a `sensor` option is this gateway: zones may name gateway ids.
            sensor = obs.sensor or self.gateway_id
            same = sensor == u.sensor
            if not same:
                u.sensor = sensor
                u.decide_zone_again()  # zones are per sensor
            off = (self._placement.observe(sensor, rssi, ts)  # a walk test's sensor: watched
                   if obs.radio is Radio.WIFI and self._placement.enabled else 0.0)
            off = self._offsets.get(sensor, off) if self._offsets else off
            if off != u.off:
                if same:
                    u.rebase(off - u.off)
                u.off = off
            rssi = rssi + off
            if not u.update(rssi, ts, self._q, self._r, self._out):
                return out
        u.heard(ts)
        u.count += 1
        if u.visit is None:
            if u.fixture:
                return out
            if u.count < u.evidence(self.s.min_sightings):
                # Cold start: one strong reading counts it in `present` already (population.py);
                # its visit still waits for min_sightings, so no visit is made of one frame.
                if self._cold_one(u, ts) and u.x + u.relief >= self.s.walkin_min_rssi:
                    u.inside = True
                return out
            self._start_visit(u, out)
        x = u.x
        if x > u.max_x:
            u.max_x = x
        if x + u.relief >= self.s.walkin_min_rssi:
            u.strong += 1
        if (not u.walkin or ts - u.first + u.day_present > u.limit) \
                and self._check_walkin(u, ts, out):
            return out
        if self.peers.active:
            self._ownership(u, ts, out)
        if (x < u.lo or x >= u.hi or u.cand_due <= ts) and u.owned:
            self._zone_step(u, ts, out)
        if u.next_mark <= ts:
            self._marks(u, ts, out)
        return out

    @property
    def _base_horizon(self) -> float:
        return max(self.s.visit_timeout_s, self.s.sighting_window_s)

    def _set_horizon(self) -> None:
        """Units expire after the longest window at the longest stretch (n of the largest
        plan: p is never below 1 / n)."""
        self._horizon = self._base_horizon * self._plans.max_size

    # -- visits ---------------------------------------------------------------------------
    def _new_unit(self, key: str, obs: Observation) -> Unit:
        u = Unit(key, obs.radio, obs.ts, obs.rssi if obs.rssi is not None else -100.0,
                 self._r, is_person(obs))
        u.ref = beacon_ref_power(obs)
        u.day_present = self._dormant.get(key, 0.0)
        u.fixture = key in self.s.fixture_ids or key in self._fixtures
        s = self.s
        u.limit = (min(s.fixture_public_max_presence_s, s.fixture_max_presence_s)
                   if obs.address_kind is AddressKind.PUBLIC else s.fixture_max_presence_s)
        return u

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float) -> list[Event]:
        """Expire, count footfall at every boundary up to `now`. Ends at most `expire_batch`
        units: when more are due, `backlog` is True and the caller calls again with the same
        `now` (a boundary's footfall waits for the units that expired before it)."""
        nf = self._next_footfall
        if nf is not None and now < nf and self._wheel.idle(now) and not self.peers.dirty:
            self.backlog = False  # most ticks: nothing due, no boundary, no peer news
            return []
        out: list[Event] = []
        self._budget = self.expire_batch
        self.backlog = False
        interval = self.s.footfall_interval_s
        if self._next_footfall is None:
            self._next_footfall = (now // interval + 1) * interval
        while self._next_footfall <= now:
            boundary = self._next_footfall
            if not self._expire(boundary, out):
                return out
            self._footfall(boundary, out)
            self._next_footfall = boundary + interval
            if not self._units and self._next_footfall + interval <= now:
                # Nothing left to report: jump over the quiet hours in one step.
                self._next_footfall = (now // interval) * interval
        if self._expire(now, out) and self.peers.dirty:
            self._recheck(now, out)
        return out

    def _recheck(self, now: float, out: list[Event]) -> None:
        """Ownership after peer summaries arrived (sorted: the same order on every run)."""
        dirty = sorted(self.peers.dirty)
        self.peers.dirty.clear()
        for key in dirty:
            u = self._units.get(key)
            if u is not None and u.visit is not None:
                v = self.peers.visit_of(key)
                if not u.announced and v is not None and (v[1], v[0]) < (u.first, u.visit):
                    u.visit, u.first, u.announced = v  # one visit id store-wide
                elif v is not None and v[0] == u.visit and v[2]:
                    u.announced = True  # a peer announced it meanwhile
                self._ownership(u, now, out)
                if u.owned and u.hi < u.lo:
                    self._zone_step(u, now, out)

    def _expire(self, now: float, out: list[Event]) -> bool:
        """End the units due at `now` (core/presence/wheel.py); False when the batch budget
        ran out."""
        horizon = self._horizon
        ended, done = self._wheel.due(now, horizon, self.s.visit_timeout_s, self._budget)
        self._budget -= len(ended)
        for u in ended:
            if u.last + horizon <= now:
                del self._units[u.key]
                self._retire(u, out)
            else:  # its visit timed out first: the unit (rhythm, channels) stays to the horizon
                self._end_visit(u, out)
                self._wheel.file(u, u.last + horizon)
        if not done:
            self.backlog = True
        return done

    def _retire(self, u: Unit, out: list[Event]) -> None:
        self._end_visit(u, out)
        self.peers.forget(u.key)
        # Remember long stays for the fixture rule; forget everyone else at once.
        if u.day_present >= self.s.walkin_min_s and not u.fixture:
            self._dormant[u.key] = u.day_present

    def _evict(self, out: list[Event]) -> None:
        for u in self._wheel.oldest(len(self._units) - self.s.max_devices, self._horizon,
                                    self.s.visit_timeout_s):
            del self._units[u.key]
            self._retire(u, out)
            self.evicted += 1

    def _roll_day(self, day: int) -> None:
        if day != self._day:
            self._day = day
            self._dormant.clear()
            self._fixtures.clear()
            self.footfall.roll_day(day)

    def _footfall(self, now: float, out: list[Event]) -> None:
        self._roll_day(int(now // _DAY))
        # a sensor whose placement is not known yet, or whose store looks empty now, has
        # weak units judged sooner (population.py)
        pop = present(self._units.values(), now, self.s, self._started,
                      *self._placement.states(self._offsets))
        data = self.footfall.snapshot(pop)
        data["interval_s"] = self.s.footfall_interval_s
        out.append(FootfallCounted(time=now, store=self.store_id, counts=data))
        for suffix, state in occupancy_states(data):
            if self._last_state.get(suffix) != state:
                self._last_state[suffix] = state
                out.append(OccupancyChanged(time=now, store=self.store_id, state_topic=suffix,
                                            state=state))

    # -- several gateways -----------------------------------------------------------------
    def peer_summary(self, now: float) -> list[dict[str, Any]]:
        """This gateway's compact view of every device seen within the visit timeout."""
        return self.peers.summary(self._units.values(), now)

    def apply_peer_summary(self, gateway_id: str, items: Iterable[Mapping[str, Any]],
                           now: float) -> None:
        self.peers.apply(gateway_id, items, now, self._units)

    @property
    def wifi_plans(self) -> dict[str, dict[str, object]]:  # for stats: hopping.py `describe`
        return self._plans.describe()

    @property
    def wifi_placement(self) -> dict[str, dict[str, object]]:  # stats: placement.py `describe`
        return self._placement.describe(self._offsets)

    def take_walkins(self) -> list[str]:
        """The visits that walked in since the last call; the first call starts the list
        (nothing is kept for a gateway without a visit gate)."""
        got = self.walkins or []
        self.walkins = []
        return got

    def is_visitor(self, device: str, visit_id: str) -> bool:
        """That visit is the unit's open one and has walked in (the visit gate's question,
        core/visit_gate.py; a batch may hold the end of a device's last visit and a new one)."""
        u = self._units.get(device)
        return u is not None and u.visit == visit_id and u.walkin

    @property
    def quiet_horizon_s(self) -> float:
        """After this long without a sighting every unit has expired, its visit ended, and a
        footfall summary has counted the exit."""
        return self._horizon + self.s.footfall_interval_s
