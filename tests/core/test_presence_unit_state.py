"""A unit survives a restart across versions: the continuity snapshot (core/continuity.py) is a
pickle of the engine, and a unit pickled before it was its own Signal held its RSSI estimate
in a `sig` object. Such a snapshot still thaws into the same estimate, so an upgrade keeps the
day's open visits instead of starting cold."""

from __future__ import annotations

import pickle
from typing import Any

from presence_gateway.core.model import Radio
from presence_gateway.core.presence.tracker import Signal
from presence_gateway.core.presence.units import Unit


class _OldUnit:
    """Unpickles as a unit of the older layout did: a new Unit given its slots' state, with
    the estimate in `sig` instead of x, p, t, n (pickle's NEWOBJ refuses a stand-in class,
    so the Unit is made by its `__new__` explicitly; the state goes the same way: slots)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: Any) -> Any:
        return Unit.__new__, (Unit,), (None, self.state)


def test_a_unit_of_the_older_layout_thaws_with_its_estimate() -> None:
    u = Unit("k1", Radio.WIFI, 100.0, -70.0, 4.0, True)
    u.update(-60.0, 101.0, 0.5, 4.0, 25.0)
    u.heard(101.0)
    slots = u.__getstate__()
    old = {k: v for k, v in slots.items() if k not in ("x", "p", "t", "n")}
    sig = Signal(-70.0, 100.0, 4.0)
    sig.x, sig.p, sig.t, sig.n = u.x, u.p, u.t, 1
    old["sig"] = sig

    thawed = pickle.loads(pickle.dumps(_OldUnit(old)))

    assert type(thawed) is Unit
    assert (thawed.x, thawed.p, thawed.t, thawed.n) == (u.x, u.p, u.t, 1)
    assert (thawed.key, thawed.last, thawed.first, thawed.radio) == ("k1", 101.0, 100.0,
                                                                    Radio.WIFI)
    assert not hasattr(thawed, "sig")
    # and it goes on as a unit of this version: the next reading moves the same estimate
    before = thawed.x
    assert thawed.update(-50.0, 102.0, 0.5, 4.0, 25.0) and thawed.x > before


def test_a_unit_of_this_layout_round_trips() -> None:
    u = Unit("k2", Radio.BLE, 5.0, -65.0, 4.0, False)
    v = pickle.loads(pickle.dumps(u, protocol=pickle.HIGHEST_PROTOCOL))
    assert {s: getattr(v, s) for s in ("x", "p", "t", "n", "key", "person", "last")} == \
        {s: getattr(u, s) for s in ("x", "p", "t", "n", "key", "person", "last")}


def test_older_units_get_this_layouts_fields_as_they_thaw() -> None:
    # before channel plans (no mask, stretch or relief), with a list for its zone path, and
    # `inside` left set on a visit that had ended
    u = Unit("k3", Radio.WIFI, 5.0, -60.0, 4.0, True)
    slots = u.__getstate__()
    for name in ("chans", "chans_n", "stretch", "relief"):
        del slots[name]
    slots.update(path=["front", "back"], visit=None, inside=True)
    thawed = pickle.loads(pickle.dumps(_OldUnit(slots)))
    assert (thawed.chans, thawed.chans_n, thawed.stretch, thawed.relief) == (0, 0, 1.0, 0.0)
    assert thawed.path == ("front", "back") and thawed.inside is False
    # an open visit keeps its `inside`
    slots.update(visit="v1")
    assert pickle.loads(pickle.dumps(_OldUnit(slots))).inside is True
