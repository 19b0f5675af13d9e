"""Who counts in `present` at a footfall boundary: the engine's units, walked once.

A unit counts while its visit is open, it was confirmed inside (strong on `min_sightings`
readings, `walk_in.count_after`), it is carried by a person, it is no fixture, and it is still
here, not merely not timed out (`still_here`):
- weak AND long: its smoothed RSSI never came `walk_in.weak_margin_db` above the walk-in level
  and it has been around for `walk_in.weak_max_presence`: a neighbouring room, not the zone;
  while its Wi-Fi sensor's placement is not known yet (`unsure`, core/presence/placement.py)
  the same rule judges it sooner and by the hottest placement accepted: never
  `placement.max_offset_db` above that level after `walk_in.min_time` (the time a visitor is
  classified). A hot sensor's first empty morning hears the corridor as near; this keeps it
  out until a window teaches the sensor's scale (docs/presence.md "A sensor not learnt yet");
  and once it is known, while its store looks empty now (`empty`), the weak rule itself acts
  after `walk_in.min_time` (its 30 min wait is for seated people in a busy room);
- silent past its visit timeout: ended, only not expired yet;
- otherwise here while silent for at most `exit.min_quiet`, or `exit.rhythm_factor` times its
  own usual gap between bursts (a device with no rhythm yet stays).
Every window is stretched by the unit's 1 / p under a channel plan (core/presence/hopping.py).

Cold start: right after the gateway starts (a reboot in an open store, a replay), the people
already inside are not heard yet: with `min_sightings` readings each, `present` started at 2
of 15 people on 02-16 and took three minutes to climb. So within the cold-start window
(`walk_in.min_time` of the start) a Wi-Fi unit counts on ONE strong reading (the engine's
`_cold_one`; a weak one still waits for `min_sightings`), and each counted unit of the window
stands for the devices like it not heard yet: with its bursts a Poisson stream of
its own mean gap g (the others' median until it has one), a device inside since the start
has been heard by t with probability pi = 1 - e^-(t/g), so it is weighted 1 / pi
(Horvitz-Thompson; at most COLD_WEIGHT_MAX). The weights tend to 1 within a few gaps, and end
with the cold-start window. The extra devices go into `present` only (Population.unheard),
not `devices`. The window is not stretched by a channel plan's 1 / p: the unit's own gap (as
the radio hears it) already carries the lower catch rate into its weight, and a longer window
only let more one-off frames count (measured while choosing the rule: 10 channels 250 ms on
02-16, MAE 1.58 stretched against 1.47).

Why a module and a loop of its own: this walk is the one place the engine visits every unit
(once per footfall interval), so at a crowd it is paid per unit, not per observation: with
100k devices present, each heard once a minute, it is about one unit per observation. The
conditions are inlined over local names and the counts kept per (radio, zone) object, then
turned into a `Population` once: about a third of the cost of a method call and a
`Population.add` per unit (bench.presence_memory --crowd).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from presence_gateway.core.model import Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.footfall import Population
from presence_gateway.core.presence.tracker import Zone
from presence_gateway.core.presence.units import Unit

COLD_GAP_S = 60.0  # a unit's burst gap before it has one: one idle probe interval
COLD_WEIGHT_MAX = 4.0  # one unit stands for at most this many devices


def cold_weight(gap: float, since_start: float) -> float:
    """1 / pi for a counted cold-start unit of burst gap `gap`: pi = P(heard at least once
    since the start) = 1 - e^-(t/g) (see the module docstring)."""
    pi = 1.0 - math.exp(-since_start / gap)  # heard at least once by now
    return COLD_WEIGHT_MAX if pi <= 1.0 / COLD_WEIGHT_MAX else 1.0 / pi


def unheard_devices(cold: list[Unit], since_start: float) -> float:
    """The sum of (1 / pi - 1) over the counted cold-start units: the devices they stand for
    that were not heard yet. A unit without a gap of its own (one burst so far) takes the
    median of the others' (COLD_GAP_S when none has one)."""
    if not cold:
        return 0.0
    gaps = sorted(u.gap for u in cold if u.gap > 0.0)
    typical = gaps[len(gaps) // 2] if gaps else COLD_GAP_S
    return sum(cold_weight(u.gap or typical, since_start) for u in cold) - len(cold)


def still_here(u: Unit, now: float, s: PresenceSettings, unsure: bool = False,
               empty: bool = False) -> bool:
    """The rule above for one unit, spelled plainly (the walk below inlines it; a test
    holds the two together). `unsure`: its sensor's placement is not known yet; `empty`:
    its sensor's store looks empty now."""
    st = u.stretch
    peak, near = u.max_x + u.relief, s.walkin_min_rssi + s.weak_margin_db
    weak_after = s.weak_max_presence_s
    if empty and u.radio is Radio.WIFI:  # sooner, never later (a config may set it shorter)
        weak_after = min(weak_after, s.walkin_min_s)
    if peak < near and now - u.first > weak_after * st:
        return False
    if unsure and u.radio is Radio.WIFI and peak < near + s.placement_max_offset_db \
            and now - u.first > s.walkin_min_s * st:
        return False
    quiet = now - u.last
    if quiet > s.visit_timeout_s * st:
        return False
    return quiet <= s.exit_min_quiet_s * st or u.gap == 0.0 \
        or quiet <= s.exit_rhythm_factor * u.gap


def present(units: Iterable[Unit], now: float, s: PresenceSettings,
            started: float = -math.inf, unsure: frozenset[str] = frozenset(),
            empty: frozenset[str] = frozenset()) -> Population:
    """The population counting in `present` at `now` (the same rule as `still_here`), with
    the cold-start weights while `now` is within `walk_in.min_time` of `started` (the
    engine's first observation). `unsure`: the Wi-Fi sensors whose placement is not known
    yet; `empty`: those whose store looks empty now."""
    weak_below = s.walkin_min_rssi + s.weak_margin_db
    # a sensor not learnt yet, or whose store looks empty now, judges weak units this soon
    unsure_below, soon = weak_below + s.placement_max_offset_db, s.walkin_min_s
    weak_after, timeout = s.weak_max_presence_s, s.visit_timeout_s
    min_quiet, factor = s.exit_min_quiet_s, s.exit_rhythm_factor
    cold_until, since_start = s.walkin_min_s, now - started
    cold: list[Unit] = []
    cold_now = since_start < cold_until  # then every unit counted was first heard within it
    # Counted per zone object, one dict per radio: a Zone hashes by identity (eq=False), so
    # no tuple is built and no Python-level __hash__ runs per unit (Radio's is one too).
    wifi_radio = Radio.WIFI
    by_zone: tuple[dict[Zone | None, int], dict[Zone | None, int]] = ({}, {})
    for u in units:
        # Inside without a visit: one strong reading in the cold start (sessions.py `feed`).
        if not u.inside or not u.person or u.fixture:
            continue
        st = u.stretch
        peak = u.max_x + u.relief
        if peak < weak_below and now - u.first > weak_after * st:
            continue
        if unsure and peak < unsure_below and now - u.first > soon * st \
                and u.radio is wifi_radio and u.sensor in unsure:
            continue
        if empty and peak < weak_below and now - u.first > soon * st \
                and u.radio is wifi_radio and u.sensor in empty:
            continue
        quiet = now - u.last
        if quiet > timeout * st:
            continue
        # (its gap is read only when it has been quiet that long: with a crowd present each
        # float a unit holds is an object out of the CPU cache)
        if quiet > min_quiet * st and u.gap != 0.0 and quiet > factor * u.gap:
            continue
        wifi = u.radio is wifi_radio
        counts = by_zone[0 if wifi else 1]
        zone = u.zone
        counts[zone] = counts.get(zone, 0) + 1
        if wifi and cold_now:
            cold.append(u)
    pop = Population(unheard=unheard_devices(cold, since_start))
    for i, counts in enumerate(by_zone):
        for zone, n in counts.items():
            if i == 0:
                pop.wifi += n
            else:
                pop.ble += n
            if zone is not None:
                pair = pop.zones.setdefault(zone.name, [0, 0])
                pair[i] += n
    return pop
