"""The grouper's sweep looks only at groups that may be due (a heap), with the full scan's
results: the same group for every observation, on a stream with rotation, returns, silences
longer than resume_s and slightly out-of-order time (several sensors merged)."""

from __future__ import annotations

import pickle
import random

import pytest

from presence_gateway.core.model import AddressKind, Kind, Observation, Radio
from presence_gateway.core.presence.grouping import DeviceGrouper


class FullScan(DeviceGrouper):
    """The previous sweep: every live group, every time."""

    def expire(self, now: float) -> None:
        self._next_sweep = now + self.sweep_s
        horizon = now - self.resume_s
        for g in [g for g in self._groups.values() if g.last < horizon]:
            self._drop(g)


def stream(seed: int, n: int = 30_000) -> list[Observation]:
    rnd = random.Random(seed)
    out: list[Observation] = []
    ts = 0.0
    for i in range(n):
        ts += rnd.expovariate(1.0) * (40.0 if rnd.random() < 0.01 else 0.5)  # some silences
        phone = rnd.randrange(300)
        rotate = rnd.random() < 0.2
        addr = f"{phone:04x}{rnd.randrange(1 << 16) if rotate else 0:04x}"
        out.append(Observation(
            ts=ts + rnd.uniform(-1.0, 1.0), radio=Radio.WIFI, device=addr,
            address_kind=AddressKind.RANDOM, rssi=-50 - phone % 40 + rnd.randrange(-3, 4),
            channel=rnd.choice((1, 6, 11)), kind=Kind.PROBE_REQUEST.value,
            fingerprint=f"fp{phone % 40}", seq=(i * 7 + phone * 101) % 4096))
    return out


@pytest.mark.pure_python  # FullScan subclasses DeviceGrouper: Python cannot subclass compiled
def test_the_heap_sweep_groups_exactly_as_the_full_scan() -> None:
    # 25 groups at most, remembered for an hour: most groups are dropped at the cap
    for seed, cap, resume in ((1, 2_000, 120.0), (2, 2_000, 120.0), (3, 25, 3600.0)):
        kw = dict(resume_s=resume, max_gap_s=30.0, max_groups=cap)
        heap, scan = DeviceGrouper(**kw), FullScan(**kw)  # type: ignore[arg-type]
        for obs in stream(seed):
            assert heap.observe(obs) == scan.observe(obs)
            # groups dropped at the cap do not pile up in the heap
            assert len(heap._due) <= 2 * len(heap._groups) + 1025
        assert heap.stats == scan.stats
        assert sorted(heap._groups) == sorted(scan._groups)


def test_a_snapshot_without_the_heap_still_sweeps() -> None:
    g = DeviceGrouper(resume_s=60.0, max_gap_s=30.0)
    obs = stream(4, 2_000)
    for o in obs[:1_000]:
        g.observe(o)
    state = g.__getstate__()
    del state["_due"]
    old = DeviceGrouper.__new__(DeviceGrouper)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    ref = pickle.loads(pickle.dumps(g))
    for o in obs[1_000:]:
        assert old.observe(o) == ref.observe(o)
    assert old.stats == ref.stats


def test_the_grouper_keeps_as_many_groups_as_the_engine_keeps_units() -> None:
    """A group dropped at its cap while its unit lives comes back as a second unit of the same
    phone: with 50,000 groups a 100k crowd of randomizing phones doubled the engine's units
    to its cap and every observation evicted one (bench.presence_memory --crowd --wifi)."""
    from presence_gateway.core.presence.config import PresenceSettings
    from presence_gateway.core.presence.grouping import DeviceGrouper

    assert DeviceGrouper().max_groups >= PresenceSettings().max_devices


def test_a_group_survives_a_snapshot_including_one_taken_before_the_means_left_their_dict() -> None:
    import pickle

    from presence_gateway.core.presence.grouping import _Group

    g = _Group("grp-1", "fp", 1.0, True)
    for key, rssi in ((("s", 6), -60.0), (("s", 1), -70.0), (("s", 6), -50.0)):
        g.heard(key, rssi)
    again = pickle.loads(pickle.dumps(g))
    assert (again.mean_at(("s", 6)), again.mean_at(("s", 1)), again.mean_at(("t", 6))) == \
        (-58.0, -70.0, None)
    # the state an older gateway pickled: the means in a dict named `rssi`
    old = _Group.__new__(_Group)
    old.__setstate__((None, {"gid": "grp-2", "fp": "x", "first": 1.0, "last": 2.0,
                             "seq": None, "linkable": True, "dead": False,
                             "addresses": ["a"], "rssi": {("s", 6): -61.0, ("t", 6): -70.0}}))
    assert (old.gid, old.mean_at(("s", 6)), old.mean_at(("t", 6))) == ("grp-2", -61.0, -70.0)


def test_the_fingerprint_and_address_maps_hold_exactly_the_live_groups() -> None:
    # A fingerprint maps to its one group, or to a list once several share it; a group's
    # addresses are one str, or a list from the second. Dropping must undo both forms.
    g = DeviceGrouper()
    for obs in sorted(stream(3, 8_000), key=lambda o: o.ts):
        g.observe(obs)
        live = [x for x in g._groups.values() if x.linkable]
        for x in live[-3:]:
            peers = g._by_fp[x.fp or ""]
            assert peers is x or (isinstance(peers, list) and x in peers and len(peers) > 1)
    for peers in g._by_fp.values():
        for x in peers if isinstance(peers, list) else [peers]:
            assert not x.dead and g._groups[x.gid] is x
    assert {a for a, x in g._by_address.items()} == {
        a for x in g._groups.values()
        for a in ([x.addresses] if isinstance(x.addresses, str) else x.addresses or [])}
    g.expire(1e9)  # everything silent beyond resume_s
    assert g._by_fp == {} and g._by_address == {} and not g._groups
