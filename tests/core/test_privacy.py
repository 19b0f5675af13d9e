"""The privacy boundary: keyed rotating pseudonyms; raw addresses and SSIDs stop here."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from presence_gateway.core.model import (
    AddressKind,
    Observation,
    Radio,
    Sighting,
    fast_constructor,
    new_observation,
)
from presence_gateway.core.privacy import Boundary, Pseudonymizer, format_mac, parse_mac

SECRET = b"s" * 32
ADDR = bytes.fromhex("da a1 19 00 00 01".replace(" ", ""))
DAY = 86400.0


def sighting(ts: float, ssid: bytes | None = None, address: bytes = ADDR) -> Sighting:
    return Sighting(ts=ts, radio=Radio.WIFI, address=address, address_kind=AddressKind.RANDOM,
                    rssi=-60, channel=6, kind="probe_request", fields={"ie_ids": (0, 1)},
                    seq=42, ssid=ssid, fingerprint="fp")


def test_same_device_same_day_same_key_other_day_unrelated_key() -> None:
    p = Pseudonymizer(SECRET, DAY, offset_s=4 * 3600)
    t = 1_700_000_000.0 - (1_700_000_000.0 - 4 * 3600) % DAY + 3600  # an hour into a period
    k1 = p.device_key(ADDR, t)
    assert p.device_key(ADDR, t + 3600) == k1
    k2 = p.device_key(ADDR, t + DAY)
    assert k2 != k1 and len(k1) == len(k2) == 16
    # unrelated: not a shift, not a shared prefix beyond chance
    assert sum(a == b for a, b in zip(k1, k2, strict=True)) < 8
    assert p.device_key(ADDR, t - 2 * 3600) != k1  # before 04:00: the previous period


def test_keys_depend_on_the_secret_and_agree_across_gateways() -> None:
    a, b = Pseudonymizer(SECRET), Pseudonymizer(SECRET)
    assert a.device_key(ADDR, 1e9) == b.device_key(ADDR, 1e9)  # store-wide secret: same key
    assert Pseudonymizer(b"t" * 32).device_key(ADDR, 1e9) != a.device_key(ADDR, 1e9)


def test_stable_hash_is_separate_from_device_keys() -> None:
    p = Pseudonymizer(SECRET)
    stable = p.stable_hash(ADDR, "address")
    assert stable == p.stable_hash(ADDR, "address") != p.stable_hash(ADDR, "beacon")
    assert p.device_key(ADDR, 1e9) not in stable


def test_boundary_replaces_ssid_by_hash_and_keeps_no_raw_value() -> None:
    b = Boundary(Pseudonymizer(SECRET))
    obs = b.admit(sighting(1e9, ssid=b"HomeNetwork"))
    assert obs is not None
    blob = repr(obs).encode()
    assert b"HomeNetwork" not in blob and ADDR.hex().encode() not in blob
    assert format_mac(ADDR).encode() not in blob
    assert len(obs.fields["ssid_hash"]) == 16 and obs.fields["ie_ids"] == (0, 1)
    assert (obs.seq, obs.rssi, obs.channel, obs.fingerprint) == (42, -60, 6, "fp")
    wildcard = b.admit(sighting(1e9))
    assert wildcard is not None and "ssid_hash" not in wildcard.fields


def test_opted_out_device_is_dropped_and_counted() -> None:
    p = Pseudonymizer(SECRET)
    b = Boundary(p, opt_out=frozenset({p.stable_hash(ADDR, "address")}))
    assert b.admit(sighting(1e9)) is None
    other = b.admit(sighting(1e9, address=bytes(6)))
    assert other is not None
    assert (b.stats.opted_out, b.stats.admitted) == (1, 1)


def test_resolver_sees_the_raw_sighting_and_only_its_answer_passes() -> None:
    seen: list[bytes] = []

    def resolver(s: Sighting) -> str | None:
        seen.append(s.address)
        return "entry-7"

    obs = Boundary(Pseudonymizer(SECRET), resolver=resolver).admit(sighting(1e9))
    assert obs is not None and obs.identity == "entry-7" and seen == [ADDR]


def test_fast_constructor_builds_the_same_frozen_object() -> None:
    args = (1.0, Radio.BLE, "0123456789abcdef", AddressKind.STATIC, -70, 37, "ibeacon",
            {"major": 1}, None, None, "e1", "s1")
    fast = new_observation(*args)
    assert fast == Observation(*args) and type(fast) is Observation
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.rssi = 0  # type: ignore[misc]
    # a real instance: copies, pickles (continuity snapshots) and replaces like one
    assert pickle.loads(pickle.dumps(fast)) == fast
    assert dataclasses.replace(fast, rssi=-50).rssi == -50 and fast.rssi == -70


def test_fast_constructor_refuses_a_class_it_cannot_mirror() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    with pytest.raises(TypeError):
        fast_constructor(NoSlots)


def test_mac_helpers() -> None:
    assert parse_mac("DA-A1-19-00-00-01") == ADDR == parse_mac("daa119000001")
    assert parse_mac("da:a1:19") is None and parse_mac("zz:a1:19:00:00:01") is None
    assert format_mac(ADDR) == "da:a1:19:00:00:01"


def test_secret_too_short_is_refused() -> None:
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_resolved_beacon_ids_do_not_pass_the_boundary() -> None:
    beacon = dataclasses.replace(sighting(1e9), radio=Radio.BLE, kind="ibeacon",
                                 fields={"uuid": "u-1", "major": 7, "minor": 9, "power": -59})
    resolved = Boundary(Pseudonymizer(SECRET), resolver=lambda s: "entry-1").admit(beacon)
    assert resolved is not None and dict(resolved.fields) == {"power": -59}
    anonymous = Boundary(Pseudonymizer(SECRET)).admit(beacon)
    assert anonymous is not None and anonymous.fields["major"] == 7  # a store's own beacon
