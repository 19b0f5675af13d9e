"""DeviceGrouper: linking rules, bounded memory, and real one-phone captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from presence_gateway.core.model import AddressKind, Observation, Radio, Sighting
from presence_gateway.core.presence.grouping import DeviceGrouper
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.pcap_records import iter_records

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "captures" / "wifi"
BRNO = Path(__file__).resolve().parents[1] / "data" / "wifi" / \
    "position_1_sc6-61_2023-04-17_anonymized.pcap"


def obs(device: str, ts: float, *, fp: str | None = "fpA", seq: int | None = 100,
        rssi: int | None = -50, channel: int = 1, kind: AddressKind = AddressKind.RANDOM,
        radio: Radio = Radio.WIFI, **fields: Any) -> Observation:
    return Observation(ts=ts, radio=radio, device=device, address_kind=kind, rssi=rssi,
                       channel=channel, kind="probe_request", fields=fields, seq=seq,
                       fingerprint=fp)


def test_same_address_same_group() -> None:
    g = DeviceGrouper()
    assert g.observe(obs("a", 0.0)) == g.observe(obs("a", 50.0))


def test_sequence_continuity_links_a_rotated_address() -> None:
    g = DeviceGrouper()
    first = g.observe(obs("a", 0.0, seq=4090))
    assert g.observe(obs("b", 30.0, seq=3, rssi=-10)) == first  # wraps 4095 -> 0; RSSI ignored
    assert g.stats.by_sequence == 1


def test_same_burst_links_and_distant_rssi_splits() -> None:
    g = DeviceGrouper(rssi_tol_db=10)
    first = g.observe(obs("a", 0.0, seq=100))
    assert g.observe(obs("b", 0.3, seq=2000, rssi=-55)) == first
    assert g.observe(obs("c", 0.4, seq=3000, rssi=-85)) != first  # same channel, 30 dB apart


def test_off_channel_rssi_is_not_compared() -> None:
    g = DeviceGrouper(rssi_tol_db=10)
    first = g.observe(obs("a", 0.0, seq=100, ds_channel=1))
    # heard on channel 1 while sent on channel 4: attenuated, so no RSSI veto
    assert g.observe(obs("b", 0.3, seq=2000, rssi=-85, ds_channel=4)) == first


def test_a_hopping_radio_compares_rssi_across_its_channels() -> None:
    # Two phones of one model, heard on channel 1 at -50 and -75 dBm. The next burst comes
    # from a fresh address, heard on channel 6 (sent there: on-channel) at -74: the far
    # phone's. One mean per sensor links it there; one mean per channel knew neither phone
    # on channel 6 and took the first candidate.
    g = DeviceGrouper(rssi_tol_db=10)
    near = g.observe(obs("a", 0.0, seq=100, rssi=-50, ds_channel=1))
    far = g.observe(obs("b", 0.2, seq=2000, rssi=-75, ds_channel=1))
    assert near != far
    nxt = g.observe(obs("c", 60.0, seq=3000, rssi=-74, channel=6, ds_channel=6))
    assert nxt == far


def test_next_burst_links_within_max_gap_only() -> None:
    g = DeviceGrouper(max_gap_s=120, resume_s=120)
    first = g.observe(obs("a", 0.0, seq=100))
    assert g.observe(obs("b", 60.0, seq=2000)) == first
    assert g.observe(obs("c", 400.0, seq=3000)) != first
    assert g.stats.by_return == 1


def test_a_quiet_group_is_resumed_by_a_rerandomized_phone() -> None:
    g = DeviceGrouper(max_gap_s=300, resume_s=1800)
    first = g.observe(obs("a", 0.0, seq=100, rssi=-50))
    assert g.estimate(900.0, 300.0) == 0  # quiet: not counted, but kept for resume_s
    assert g.observe(obs("b", 900.0, seq=3000, rssi=-55)) == first
    assert g.stats.by_resume == 1
    assert g.observe(obs("c", 3000.0, seq=100, rssi=-50)) != first  # silent beyond resume_s
    far = g.observe(obs("d", 3010.0, seq=2000, rssi=-50))
    assert g.observe(obs("e", 3500.0, seq=900, rssi=-90)) not in (first, far)  # RSSI veto


def test_a_recent_group_is_preferred_to_a_long_quiet_one() -> None:
    g = DeviceGrouper(max_gap_s=300, resume_s=1800)
    old = g.observe(obs("a", 0.0, seq=100, rssi=-50))
    recent = g.observe(obs("b", 700.0, seq=3000, rssi=-70, channel=6))  # new phone, other ch
    assert recent == old  # resumed: the only candidate
    g2 = DeviceGrouper(max_gap_s=300, resume_s=1800)
    old = g2.observe(obs("a", 0.0, seq=100, rssi=-50))
    recent = g2.observe(obs("b", 100.0, seq=3000, rssi=-75))  # 25 dB away: a second phone
    assert recent != old
    # at 500 s `old` is quiet beyond max_gap_s, `recent` is not: the recent one is continued
    assert g2.observe(obs("c", 500.0, seq=1500, rssi=-63)) == recent  # near both


def test_different_fingerprints_never_link() -> None:
    g = DeviceGrouper()
    assert g.observe(obs("a", 0.0, fp="x")) != g.observe(obs("b", 0.1, fp="y", seq=101))


def test_public_addresses_are_devices_of_their_own() -> None:
    g = DeviceGrouper()
    a = g.observe(obs("a", 0.0, kind=AddressKind.PUBLIC))
    assert g.observe(obs("b", 0.1, seq=101, kind=AddressKind.PUBLIC)) != a
    trusting_nothing = DeviceGrouper(trust_address_kind=False)
    a = trusting_nothing.observe(obs("a", 0.0, kind=AddressKind.PUBLIC))
    assert trusting_nothing.observe(obs("b", 0.1, seq=101, kind=AddressKind.PUBLIC)) == a


def test_other_radios_and_unfingerprinted_frames() -> None:
    g = DeviceGrouper()
    assert g.observe(obs("ble1", 0.0, radio=Radio.BLE)) == "ble1"
    n1 = g.observe(obs("n1", 0.0, fp=None))
    assert n1 != g.observe(obs("n2", 0.1, fp=None, seq=101))
    assert g.estimate(0.1, 60) == 2  # BLE is not counted here


def test_estimate_window_and_expiry_bound_memory() -> None:
    g = DeviceGrouper(max_gap_s=60, sweep_s=1, resume_s=60)
    for i in range(100):  # 100 distinct fingerprints: 100 devices, one minute apart each
        g.observe(obs(f"d{i}", i * 10.0, fp=f"fp{i}"))
    assert g.estimate(990.0, 30.0) == 3  # heard at 970, 980, 990
    assert g.stats.live_groups <= 8 and len(g._by_address) <= 8
    g.expire(10_000.0)
    assert g.estimate(10_000.0, 60) == 0 and g.stats.live_groups == 0 and not g._by_address


def test_max_groups_evicts_oldest() -> None:
    g = DeviceGrouper(max_groups=10)
    first = g.observe(obs("d0", 0.0, fp="fp0"))
    for i in range(1, 20):
        g.observe(obs(f"d{i}", float(i) / 100, fp=f"fp{i}"))
    assert g.stats.live_groups == 10
    assert g.observe(obs("d0", 0.5, fp="fp0")) != first  # evicted: starts afresh


def _file_observations(path: Path) -> list[Observation]:
    boundary = Boundary(Pseudonymizer(b"test-secret-0123456789", period_s=10**9))
    out = []
    for ts, linktype, data in iter_records(path):
        s = parse_record(data, linktype, ts)
        if isinstance(s, Sighting):
            o = boundary.admit(s)
            if o is not None:
                out.append(o)
    return sorted(out, key=lambda o: o.ts)


def test_bundled_empty_lab_never_exceeds_its_three_machines() -> None:
    """Brno 2023-04-17: empty lab, 3 public addresses (fixed machines) over a day; a machine
    silent for longer than max_gap_s comes back as a new group, but no window sees more than 3."""
    g = DeviceGrouper()
    estimates = []
    for o in _file_observations(BRNO):
        g.observe(o)
        estimates.append(g.estimate(o.ts, 300.0))
    assert max(estimates) == 3 and min(estimates) >= 1


@pytest.mark.parametrize("name,max_groups", [("iPhone11-B", 1), ("iPhone12-M", 1),
                                             ("iPhone7-F", 1), ("S21Ultra-M", 2)])
def test_one_phone_files_collapse(name: str, max_groups: int) -> None:
    path = SHARED / "probing_patterns" / f"{name}_anonymized.pcap"
    if not path.exists():
        pytest.skip(f"{path} absent (GPL-3.0 probing_patterns are read from ../shared only)")
    observations = _file_observations(path)
    g = DeviceGrouper(trust_address_kind=False)  # upstream anonymisation randomised the LA bit
    groups = {g.observe(o) for o in observations}
    assert len({o.device for o in observations}) > 5 * len(groups)
    assert len(groups) <= max_groups


def test_dropped_groups_take_their_addresses_with_them() -> None:
    """Memory stays bounded: neither expiry nor eviction leaves address entries behind."""
    g = DeviceGrouper(max_gap_s=60, resume_s=120, sweep_s=10, max_groups=100)
    for i in range(1000):  # 1000 distinct fingerprints: 1000 groups, evicting down to 100
        g.observe(obs(f"{i:016x}", float(i), fp=f"fp{i}", seq=None))
    assert len(g._groups) <= 100 and len(g._by_address) <= 100
    g.observe(obs("f" * 16, 10_000.0, fp="late", seq=None))  # everything else is long silent
    assert set(g._by_address) == {"f" * 16}
