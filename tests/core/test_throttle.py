"""Repeated, unchanged BLE adverts are throttled per device; changes always pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from presence_gateway.core.model import AddressKind, Radio, Sighting
from presence_gateway.core.throttle import AdvertThrottle

A, B = bytes.fromhex("c00000000001"), bytes.fromhex("c00000000002")
BEACON: Mapping[str, Any] = {"uuid": "u", "major": 1, "minor": 2}


def adv(ts: float, address: bytes = A, rssi: int = -60, fields: Mapping[str, Any] = BEACON,
        radio: Radio = Radio.BLE) -> Sighting:
    return Sighting(ts=ts, radio=radio, address=address, address_kind=AddressKind.STATIC,
                    rssi=rssi, channel=37, kind="ibeacon", fields=fields)


def test_ten_hertz_unchanged_advert_passes_once_a_second() -> None:
    t = AdvertThrottle(1.0)
    passed = [s.ts for s in (adv(i / 10) for i in range(100)) if t.admit(s)]
    assert passed == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert (t.stats.passed, t.stats.dropped) == (10, 90)


def test_changes_pass_at_once() -> None:
    t = AdvertThrottle(1.0)
    assert t.admit(adv(0.0))
    assert t.admit(adv(0.1, address=B))                 # another device
    assert t.admit(adv(0.2, fields={"uuid": "u", "major": 1, "minor": 3}))  # new payload
    assert t.admit(adv(0.3, rssi=-52))                  # moved: 8 dB
    assert not t.admit(adv(0.4, rssi=-54))              # 2 dB: noise


def test_wifi_is_never_throttled_and_zero_disables() -> None:
    t = AdvertThrottle(1.0)
    assert all(t.admit(adv(i / 10, radio=Radio.WIFI)) for i in range(20))
    off = AdvertThrottle(0.0)
    assert all(off.admit(adv(i / 10)) for i in range(20))


def test_memory_is_bounded() -> None:
    t = AdvertThrottle(1.0, max_devices=100)
    for i in range(10_000):
        t.admit(adv(i / 1000, address=i.to_bytes(6, "big")))
    assert len(t._last) <= 100
