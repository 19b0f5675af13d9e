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


def probe(ts: float, address: bytes = A, rssi: int = -60, fingerprint: str = "fp1",
          ssid: bytes | None = None, kind: str = "probe_request") -> Sighting:
    return Sighting(ts=ts, radio=Radio.WIFI, address=address, address_kind=AddressKind.RANDOM,
                    rssi=rssi, channel=6, kind=kind, fields={"ie_ids": (0, 1)}, seq=int(ts * 100),
                    ssid=ssid, fingerprint=fingerprint)


def test_wifi_burst_retries_collapse_to_one_sighting_per_burst() -> None:
    t = AdvertThrottle(1.0, wifi_interval_s=0.1)
    # two bursts of five identical probes 20 ms apart, 30 s between the bursts
    burst = [probe(b * 30.0 + i * 0.02) for b in range(2) for i in range(5)]
    assert [s.ts for s in burst if t.admit(s)] == [0.0, 30.0]
    assert (t.stats.passed, t.stats.dropped) == (2, 8)


def test_wifi_changes_within_a_burst_pass() -> None:
    t = AdvertThrottle(1.0, wifi_interval_s=0.1)
    assert t.admit(probe(0.0))
    assert t.admit(probe(0.01, ssid=b"home"))             # a directed probe: other SSID
    assert t.admit(probe(0.02, ssid=b"work"))
    assert not t.admit(probe(0.03, ssid=b"work"))         # its retry
    assert t.admit(probe(0.04, fingerprint="fp2"))         # other elements
    assert t.admit(probe(0.05, kind="association_request"))
    assert t.admit(probe(0.06, address=B))                 # another address
    assert t.admit(probe(0.07, rssi=-50))                  # moved 10 dB
    assert t.admit(probe(0.5))                              # past the window


def test_wifi_is_not_throttled_by_default_and_zero_disables() -> None:
    t = AdvertThrottle(1.0)
    assert all(t.admit(adv(i / 10, radio=Radio.WIFI)) for i in range(20))
    assert all(t.admit(probe(i / 100)) for i in range(20))
    off = AdvertThrottle(0.0)
    assert all(off.admit(adv(i / 10)) for i in range(20))


def test_memory_is_bounded() -> None:
    t = AdvertThrottle(1.0, max_devices=100)
    for i in range(10_000):
        t.admit(adv(i / 1000, address=i.to_bytes(6, "big")))
    assert len(t._last) <= 100
