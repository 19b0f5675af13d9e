"""The expiry wheel (core/presence/wheel.py): a reading moves nothing, and still every unit ends
exactly when an exact last-sighting order would end it."""

from __future__ import annotations

import pickle
import random

import pytest

from presence_gateway.core.events import VisitEnded
from presence_gateway.core.model import Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.presence.units import Unit
from presence_gateway.core.presence.wheel import ExpiryWheel
from tests.core.presence_helpers import ble, wifi

T0 = 1_748_851_200.0


def engine(**kw: float) -> PresenceEngine:
    return PresenceEngine(PresenceSettings(**kw), gateway_id="gw-1", store_id="s1")  # type: ignore[arg-type]


def trace(seed: int, devices: int = 300) -> list[tuple[float, str]]:
    """Random arrivals, stays and rhythms (bursts, phones every 45 s to every 5 min)."""
    rng = random.Random(seed)
    out = []
    for d in range(devices):
        t = T0 + rng.uniform(0, 1800)
        end = t + rng.uniform(0, 1500)
        while t < end:
            out.append((t, f"dev{d}"))
            t += rng.choice((0.3, 5.0, 45.0, 120.0, 290.0))
    return sorted(out)


@pytest.mark.parametrize("timeout", [300.0, 20.0])
def test_units_and_visits_end_at_the_tick_an_exact_order_ends_them(timeout: float) -> None:
    """Ticked every second: after every tick the engine tracks exactly the devices heard
    within the horizon (a reference kept by brute force), and every visit ends at the first
    tick at or after its end. A 20 s timeout is shorter than the 120 s sighting window (the
    horizon then): a deadline moves earlier when a visit opens, and a visit ended late
    fails here."""
    e = engine(visit_timeout_s=timeout)
    horizon = e.quiet_horizon_s - e.s.footfall_interval_s
    readings = trace(7)
    last: dict[str, float] = {}
    ended = 0
    i, now = 0, T0
    while now < T0 + 4000:
        while i < len(readings) and readings[i][0] < now:
            ts, dev = readings[i]
            e.feed(ble(ts, dev))
            last[dev] = ts
            i += 1
        for ev in e.tick(now):
            if isinstance(ev, VisitEnded):
                assert ev.time <= now < ev.time + 1.0, (ev.time, now)
                ended += 1
        alive = {d for d, ts in last.items() if ts + horizon > now}
        assert set(e._units) == alive, now  # a visit may end first; the unit stays till then
        now += 1.0
    assert not e._units and e._wheel.entries() == 0
    assert ended > 200  # most devices had a visit, the ones with long gaps several


def test_a_unit_heard_every_minute_is_filed_again_about_once_a_horizon() -> None:
    """The point of the wheel: a reading costs no reordering. A unit heard every 60 s for an
    hour is looked at when its deadline's second comes (every ~5 min), not at each of its 60
    readings."""
    wheel = ExpiryWheel()
    u = Unit("k", Radio.BLE, T0, -60.0, 4.0, True)
    wheel.file(u, T0 + 300.0)
    filed = 1
    for k in range(1, 61):
        u.last = T0 + 60.0 * k
        before = u.due_at
        ended, done = wheel.due(u.last, 300.0, 300.0, 1000)
        assert ended == [] and done
        filed += u.due_at != before  # filing sets the unit's due_at (at most once a call)
    assert 10 <= filed <= 14  # one filing, then one every 5 min of the hour
    ended, done = wheel.due(u.last + 299.5, 300.0, 300.0, 1000)
    assert ended == [] and done  # its deadline is within this second, not past yet
    ended, done = wheel.due(u.last + 300.0, 300.0, 300.0, 1000)
    assert ended == [u] and done and wheel.entries() == 0


def test_the_device_cap_ends_the_least_recently_heard_first() -> None:
    e = engine(max_devices=2)
    e.feed(wifi(T0, "a"))
    e.feed(wifi(T0 + 1, "b"))
    e.feed(wifi(T0 + 2, "a"))  # a was filed first, but heard again since
    e.feed(wifi(T0 + 3, "c"))
    assert set(e._units) == {"a", "c"} and e.evicted == 1


def test_a_budget_stops_mid_bucket_and_the_next_call_carries_on() -> None:
    wheel = ExpiryWheel()
    units = [Unit(f"k{i}", Radio.BLE, T0, -60.0, 4.0, True) for i in range(5)]
    for u in units:
        wheel.file(u, T0 + 300.0)
    first, done = wheel.due(T0 + 400, 300.0, 300.0, 2)
    assert first == units[:2] and not done
    rest, done = wheel.due(T0 + 400, 300.0, 300.0, 10)
    assert rest == units[2:] and done and wheel.entries() == 0


def test_a_snapshot_without_a_wheel_gets_one_and_its_units_still_end() -> None:
    """A snapshot of the version before the wheel: its units in last-sighting order, no wheel."""
    old = engine()
    for k in range(20):
        old.feed(ble(T0 + k, f"dev{k}"))
        old.feed(ble(T0 + 60 + k, f"dev{k}"))
    state = old.__getstate__()
    del state["_wheel"]
    thawed = PresenceEngine.__new__(PresenceEngine)
    thawed.__setstate__(pickle.loads(pickle.dumps(state)))
    fresh = engine()
    fresh.adopt(thawed)
    assert fresh._wheel.entries() == 20
    fresh.tick(T0 + 60 + 9 + 300.5)  # dev0..dev9 are a horizon old, dev10.. are not
    assert sorted(fresh._units) == sorted(f"dev{k}" for k in range(10, 20))


def test_idle_until_the_second_of_the_earliest_bucket() -> None:
    wheel = ExpiryWheel()
    assert wheel.idle(T0)
    u, v = (Unit(k, Radio.BLE, T0, -60.0, 4.0, True) for k in ("u", "v"))
    wheel.file(u, T0 + 300.5)
    wheel.file(v, T0 + 200.2)  # filed later, due earlier
    assert wheel.idle(T0 + 199.9) and not wheel.idle(T0 + 200.0)
    ended, done = wheel.due(T0 + 250.0, 300.0, 300.0, 10)
    assert ended == [] and done  # v was heard since: filed again under T0 + 300
    assert wheel.idle(T0 + 299.9) and not wheel.idle(T0 + 300.0)
    ended, _ = wheel.due(T0 + 301.0, 300.0, 300.0, 10)
    assert ended == [u, v] or ended == [v, u]
    assert wheel.idle(T0 + 1e6)


def test_a_wheel_of_the_earlier_layout_is_read_into_a_heap() -> None:
    """The version before kept the lowest bucket as a walked-up `_front`, no heap."""
    e = engine()
    for k in range(10):
        e.feed(ble(T0 + 30 * k, f"dev{k}"))
        e.feed(ble(T0 + 30 * k + 2, f"dev{k}"))
    state = e._wheel.__getstate__()
    del state["_heap"]
    state["_front"] = min(state["_buckets"])
    e._wheel = ExpiryWheel.__new__(ExpiryWheel)
    e._wheel.__setstate__(pickle.loads(pickle.dumps(state)))
    assert not hasattr(e._wheel, "_front")
    e.tick(T0 + 30 * 4 + 2 + 300.5)  # dev0..dev4 are a horizon old
    assert sorted(e._units) == [f"dev{k}" for k in range(5, 10)]
