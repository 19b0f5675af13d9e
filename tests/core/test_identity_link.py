"""Identity linking and consent: which events carry the customer id, `identity.linked`, consent
withdrawn mid-visit, and the visit history the offers count.

The entries are imported as in tests/core/test_identity.py (its `load`, the same secret), so
the links are made from exactly what the registry holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from presence_gateway.core.events import Event, EventType
from presence_gateway.core.identity.index import Entry, IdentityIndex
from presence_gateway.core.identity.link import Linker, VisitRecord
from presence_gateway.core.model import AddressKind, Observation, Radio
from tests.core.test_identity import IRK, T0, H, load
from tests.events import make

LINKED = EventType.IDENTITY_LINKED


# -- linking and consent -------------------------------------------------------------------------


def obs(device: str, identity: str | None, ts: float = T0) -> Observation:
    return Observation(ts, Radio.BLE, device, AddressKind.RESOLVABLE, -60, None, "apple",
                       identity=identity)


def ev(kind: str, visit: str, device: str, ts: float = T0, **extra: Any) -> Event:
    data: Mapping[str, Any] = {"visit_id": visit, "device": device, **extra}
    return make(kind, ts, data, subject=visit)


def linker_for(consent: str) -> tuple[Linker, IdentityIndex, str]:
    entries = load(f"customer_id,kind,value,consent\ncust-7,irk,{IRK.hex()},{consent}\n")
    ix = IdentityIndex(H, entries)
    return Linker(ix.get), ix, entries[0].entry_id


def journey(lk: Linker, entry: str) -> list[Event]:
    lk.observe(obs("dev1", entry))
    out = lk.decorate([ev("presence.visit.started", "v1", "dev1")])
    lk.observe(obs("dev1", entry, T0 + 5))
    out += lk.decorate([ev("presence.zone.entered", "v1", "dev1", T0 + 5, zone="shoes"),
                        ev("presence.zone.dwell", "v1", "dev1", T0 + 65, zone="shoes")])
    out += lk.decorate([ev("presence.visit.ended", "v1", "dev1", T0 + 400),
                        ev("presence.visit.started", "v2", "anon", T0 + 401)])
    return out


def test_personalization_and_analytics_link_and_scope_every_event() -> None:
    lk, _, entry = linker_for("personalization analytics")
    out = journey(lk, entry)
    assert [e.type for e in out] == [
        "presence.visit.started", LINKED, "presence.zone.entered", "presence.zone.dwell",
        "presence.visit.ended", "presence.visit.started"]
    assert dict(out[1].data) == {"visit_id": "v1", "customer_id": "cust-7", "method": "irk"}
    assert [e.data.get("customer_id") for e in out] == ["cust-7"] * 5 + [None]


def test_personalization_only_keeps_customer_off_analytics_events() -> None:
    lk, _, entry = linker_for("personalization")
    out = journey(lk, entry)
    assert [(e.type, e.data.get("customer_id")) for e in out] == [
        ("presence.visit.started", None), (LINKED, "cust-7"),
        ("presence.zone.entered", "cust-7"), ("presence.zone.dwell", "cust-7"),
        ("presence.visit.ended", None), ("presence.visit.started", None)]


@pytest.mark.parametrize("consent", ["analytics offers", "analytics", "offers"])
def test_no_personalization_no_linked_event_and_no_customer_id(consent: str) -> None:
    lk, _, entry = linker_for(consent)
    out = journey(lk, entry)
    assert LINKED not in [e.type for e in out]
    assert all("customer_id" not in e.data for e in out)
    assert all("cust-7" not in repr(e) for e in out)
    # the internal link exists for consent-checking consumers such as the offer engine
    lk.observe(obs("dev2", entry, T0 + 500))
    lk.decorate([ev("presence.visit.started", "v3", "dev2", T0 + 500)])
    link = lk.link_for("v3")
    assert link is not None and link.customer_id == "cust-7"


def test_link_found_after_visit_start_is_emitted_without_new_events() -> None:
    lk, _, entry = linker_for("personalization")
    assert lk.decorate([ev("presence.visit.started", "v1", "dev1")])[0].type == \
        "presence.visit.started"
    lk.observe(obs("dev1", entry, T0 + 30))
    out = lk.decorate([])
    assert [(e.type, e.time, e.data["visit_id"]) for e in out] == [(LINKED, T0 + 30, "v1")]
    assert lk.decorate([]) == []  # once per visit


def test_consent_withdrawn_mid_visit_stops_customer_ids() -> None:
    lk, ix, entry = linker_for("personalization analytics")
    lk.observe(obs("dev1", entry))
    lk.decorate([ev("presence.visit.started", "v1", "dev1")])
    old = ix.get(entry)
    assert old is not None
    ix.replace([Entry(old.entry_id, old.customer_id, old.kind, old.material,
                      frozenset({"analytics"}))])
    out = lk.decorate([ev("presence.zone.entered", "v1", "dev1", T0 + 5, zone="a"),
                       ev("presence.visit.ended", "v1", "dev1", T0 + 400)])
    assert all("customer_id" not in e.data for e in out)


def test_visits_in_last_counts_offers_consented_visits_only() -> None:
    history = [VisitRecord("cust-7", f"old{i}", T0 - d * 86400) for i, d in enumerate((40, 20, 3))]
    _, ix, entry = linker_for("offers")
    lk = Linker(ix.get, history)
    lk.observe(obs("dev1", entry))
    lk.decorate([ev("presence.visit.started", "v1", "dev1")])
    assert lk.visits_in_last("cust-7", 30, T0) == 3  # 20 and 3 days ago, and this visit
    assert lk.visits_in_last("cust-7", 7, T0) == 2
    assert lk.visits_in_last("cust-7", 60, T0 - 86400) == 3  # a clock that moves back
    assert [r.visit_id for r in lk.take_visits()] == ["v1"]
    assert lk.take_visits() == []
    lk.purge(T0 - 30 * 86400)
    assert lk.visits_in_last("cust-7", 365, T0) == 3
    lk.forget("cust-7")
    assert lk.visits_in_last("cust-7", 365, T0) == 0
    pers, _ix2, entry2 = linker_for("personalization analytics")
    pers.observe(obs("dev1", entry2))
    pers.decorate([ev("presence.visit.started", "v1", "dev1")])
    assert pers.visits_in_last("cust-7", 30, T0) == 0 and pers.take_visits() == []
