"""The footfall walk (inlined for speed) counts exactly the units the plain rule keeps."""

from __future__ import annotations

import math
import random

import pytest

from presence_gateway.core.model import Radio
from presence_gateway.core.presence.config import PresenceSettings, ZoneSettings
from presence_gateway.core.presence.population import COLD_WEIGHT_MAX, present, still_here
from presence_gateway.core.presence.tracker import Zone, resolve_zones
from presence_gateway.core.presence.units import Unit


def random_unit(rng: random.Random, zones: list[Zone | None], now: float) -> Unit:
    u = Unit(f"u{rng.random()}", rng.choice([Radio.WIFI, Radio.BLE]), now - 3000, -60.0, 25.0,
             rng.random() < 0.9)
    u.visit = "v" if rng.random() < 0.9 else None
    u.inside = rng.random() < 0.8
    u.fixture = rng.random() < 0.05
    u.first = now - rng.uniform(0, 4000)
    u.last = now - rng.uniform(0, 700)
    u.gap = rng.choice([0.0, rng.uniform(5, 200)])
    u.max_x = rng.uniform(-90, -40)
    u.stretch = rng.choice([1.0, 1.0, 3.0, 10.0])
    u.zone = rng.choice(zones)
    u.sensor = rng.choice(["new", "known", "empty"])
    return u


@pytest.mark.parametrize("weak_after", [1800.0, 120.0])  # the default; shorter than min_time
def test_the_walk_counts_what_the_rule_keeps(weak_after: float) -> None:
    rng = random.Random(7)
    s = PresenceSettings(weak_max_presence_s=weak_after)
    zones: list[Zone | None] = [None, *resolve_zones((ZoneSettings("front"),
                                                      ZoneSettings("back")), -59.0)]
    now = 1e6
    units = [random_unit(rng, zones, now) for _ in range(5000)]
    # "new": a Wi-Fi sensor whose placement is not known yet, "empty": one whose store looks
    # empty now (placement.py `states`)
    pop = present(units, now, s, unsure=frozenset({"new"}), empty=frozenset({"empty"}))
    # inside without a visit: counted on one strong reading at a cold start (no visit yet)
    kept = [u for u in units if u.inside and u.person and not u.fixture
            and still_here(u, now, s, unsure=u.sensor == "new", empty=u.sensor == "empty")]
    # (the empty-store rule only shortens the weak rule's wait: not below a shorter one)
    for sensor in ("new", "empty") if weak_after > s.walkin_min_s else ("new",):
        assert len([u for u in kept if u.sensor == sensor]) < sum(
            u.inside and u.person and not u.fixture and still_here(u, now, s)
            for u in units if u.sensor == sensor), f"the {sensor} sensor's rule removed some"
    assert any(u.visit is None for u in kept)
    assert 500 < len(kept) < 4500  # the random units exercise both outcomes of every rule
    assert pop.wifi == sum(u.radio is Radio.WIFI for u in kept)
    assert pop.ble == sum(u.radio is Radio.BLE for u in kept)
    for name in ("front", "back"):
        in_zone = [u for u in kept if u.zone is not None and u.zone.name == name]
        assert pop.zones.get(name, [0, 0]) == [sum(u.radio is Radio.WIFI for u in in_zone),
                                              sum(u.radio is Radio.BLE for u in in_zone)]


def counted(key: str, first: float, gap: float, now: float) -> Unit:
    u = Unit(key, Radio.WIFI, first, -55.0, 25.0, True)
    u.visit, u.inside, u.gap, u.last, u.max_x = "v", True, gap, now - 1.0, -55.0
    return u


def test_the_cold_start_weights_stand_for_the_phones_not_heard_yet() -> None:
    # Two minutes after the start: a phone probing every 60 s has been heard (once is enough
    # in the cold-start window) with probability 1 - e^-2 = 0.86, so it stands for 1 / 0.86
    # phones; a phone with no gap yet takes the other's; a unit first heard after the
    # cold-start window stands for itself, as does every unit once the start is long past.
    s = PresenceSettings()
    started = 1000.0
    now = started + 120.0
    units = [counted("a", started + 5, 60.0, now), counted("b", started + 70, 0.0, now)]
    pop = present(units, now, s, started)
    w = 1.0 / (1.0 - math.exp(-2.0))
    assert pop.wifi == 2 and pop.unheard == pytest.approx(2 * (w - 1.0))
    assert present(units, now, s).unheard == 0.0  # no start known: no weights
    later = started + s.walkin_min_s + 400
    late = counted("late", started + s.walkin_min_s + 10, 60.0, later)
    pop = present([counted("a", started + 5, 60.0, later), late], later, s, started)
    assert pop.wifi == 2 and pop.unheard == 0.0  # the weights end with the cold-start window
    # at most COLD_WEIGHT_MAX each: a unit heard within a second of the start
    assert present([counted("c", started, 60.0, started + 1)], started + 1, s,
                   started).unheard == COLD_WEIGHT_MAX - 1.0
