"""BLE air captures (LE LL 256, nRF Sniffer 272, btsnoop HCI) against README counts and tshark
(damaged captures: test_ble_pcap_damaged.py)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.ble.air import (
    AirAdvert,
    hci_event_reports,
    iter_btsnoop_reports,
    parse_ll_record,
    parse_pdu,
    rf_to_channel_index,
)
from presence_gateway.core.ble.decode import parse_ad
from presence_gateway.core.model import Radio, Rejection
from presence_gateway.core.privacy import format_mac
from presence_gateway.drivers.ble_pcap import BlePcapDriver, iter_capture, sightings_from_air
from presence_gateway.errors import DriverError
from tests.fuzzing import budget
from tests.sinks import ListSink

DATA = Path(__file__).resolve().parents[1] / "data" / "ble_air"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "captures" / "ble"
BTSNOOP = SHARED / "btsnoop" / "btsnoop_hci20241230_1.log"
ICE9 = SHARED / "ice9_hackrf_boston"
LEGACY = ("ADV_IND", "ADV_NONCONN_IND", "ADV_SCAN_IND", "SCAN_RSP")



def _tally(path: Path) -> tuple[Counter[str], set[bytes], set[bytes]]:
    pdus: Counter[str] = Counter()
    addrs: set[bytes] = set()
    random_addrs: set[bytes] = set()
    for rec in iter_capture(str(path)):
        if rec is None:
            pdus["skipped"] += 1
        elif isinstance(rec, Rejection):
            pdus["rejected:" + rec.reason] += 1
        else:
            pdus[rec.pdu] += 1
            addrs.add(rec.address)
            if rec.address_type == "random":
                random_addrs.add(rec.address)
    return pdus, addrs, random_addrs


# README table: legacy PDU counts by type, distinct advertisers (random). The README counts by
# header type over all frames; we additionally reject frames whose length contradicts their type
# (SDR bit flips), so a count may only fall short by the number of such rejections.
README = [
    ("short_ble_sniff.pcap", {"ADV_IND": 82, "ADV_NONCONN_IND": 3, "SCAN_RSP": 27}, 22, 15),
    ("take_2__ble_all_adv.pcap",
     {"ADV_IND": 117, "ADV_NONCONN_IND": 22, "ADV_SCAN_IND": 1, "SCAN_RSP": 48}, 15, 9),
    ("take_3__adv39_2_promising_src.pcap", {"ADV_IND": 120, "SCAN_RSP": 37}, 1, 1),
    ("take_3__adv37_2.pcap",
     {"ADV_IND": 1667, "ADV_NONCONN_IND": 701, "ADV_SCAN_IND": 2, "SCAN_RSP": 712}, 136, 135),
    ("take_3__adv38_2.pcap",
     {"ADV_IND": 2770, "ADV_NONCONN_IND": 2621, "ADV_SCAN_IND": 4, "SCAN_RSP": 1221}, 258, 257),
    # README says 146 (145 random); one address there comes from a frame we reject as garbled.
    ("take_3__adv39_2.pcap",
     {"ADV_IND": 1310, "ADV_NONCONN_IND": 755, "ADV_SCAN_IND": 3, "SCAN_RSP": 398}, 145, 144),
]


def _find(name: str) -> Path:
    for p in (DATA / name, ICE9 / name):
        if p.exists():
            return p
    pytest.skip(f"{name}: ../shared captures folder absent")


@pytest.mark.parametrize(("name", "want", "advertisers", "randoms"), README)
def test_ice9_counts_match_readme(name: str, want: dict[str, int], advertisers: int,
                                  randoms: int) -> None:
    pdus, addrs, random_addrs = _tally(_find(name))
    bad_length = pdus["rejected:ll_bad_length"]
    for pdu in LEGACY:
        assert want.get(pdu, 0) - bad_length <= pdus[pdu] <= want.get(pdu, 0), pdu
    assert (len(addrs), len(random_addrs)) == (advertisers, randoms)
    assert set(pdus) <= {*LEGACY, "ADV_DIRECT_IND", "skipped", "rejected:ll_bad_pdu_type",
                         "rejected:ll_bad_length", "rejected:ext_header_overrun"}


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook that keeps repeated keys (tshark repeats "btcommon.eir_ad.entry")."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def _ad_entries(data: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(data) and data[pos]:
        n = data[pos]
        out.append((n, data[pos + 1] if pos + 1 < len(data) else -1, data[pos + 2:pos + 1 + n]))
        pos += n + 1
    return out


def test_promising_src_matches_tshark_frame_by_frame() -> None:
    frames = json.loads((DATA / "take_3__adv39_2_promising_src.json").read_text(),
                        object_pairs_hook=_pairs)
    recs = [r for r in iter_capture(str(DATA / "take_3__adv39_2_promising_src.pcap"))]
    assert len(recs) == len(frames) == 157
    compared_entries = typed_entries = 0
    for rec, frame in zip(recs, frames, strict=True):
        layers = frame["_source"][0]["layers"][0]
        btle, rf = layers["btle"][0], layers["btle_rf"][0]
        assert isinstance(rec, AirAdvert)
        assert format_mac(rec.address) == btle["btle.advertising_address"][0]
        header = btle["btle.advertising_header_tree"][0]
        pdu_type = int(header["btle.advertising_header.pdu_type"][0], 16)
        tx_random = header["btle.advertising_header.randomized_tx"][0] == "1"
        assert rec.pdu == {0: "ADV_IND", 4: "SCAN_RSP"}[pdu_type]
        assert rec.channel == int(rf["btle_rf.channel"][0]) == 39
        assert rec.address_type == ("random" if tx_random else "public")  # frame 128: a flip
        assert len(rec.data) + 6 == int(btle["btle.length"][0])
        key = ("btcommon.eir_ad.advertising_data" if pdu_type == 0
               else "btcommon.eir_ad.scan_response_data")
        entries = btle[key][0]["btcommon.eir_ad.entry"] if key in btle else []
        ours = _ad_entries(rec.data)
        assert [int(e["btcommon.eir_ad.entry.length"][0]) for e in entries] == \
            [n for n, _, _ in ours][:len(entries)]
        for e, (_, ad_type, body) in zip(entries, ours, strict=False):
            assert int(e["btcommon.eir_ad.entry.type"][0], 16) == ad_type
            typed_entries += 1
            if ad_type == 0xFF and "btcommon.eir_ad.entry.data" in e:
                assert int(e["btcommon.eir_ad.entry.company_id"][0], 16) == \
                    int.from_bytes(body[:2], "little")
                assert e["btcommon.eir_ad.entry.data"][0].replace(":", "") == body[2:].hex()
                compared_entries += 1
    assert compared_entries >= 120 and typed_entries >= 350


def test_nrf_sniffer_coded_phy_extended() -> None:
    pdus, addrs, random_addrs = _tally(DATA / "odid_bt5_lr_sample.pcapng")
    assert pdus == {"AUX_ADV_IND": 244, "rejected:crc_bad": 30}
    assert len(addrs) == 1 and not random_addrs
    recs = [r for r in iter_capture(str(DATA / "odid_bt5_lr_sample.pcapng"))
            if isinstance(r, AirAdvert)]
    first = recs[0]
    assert format_mac(first.address) == "e0:7d:ea:eb:2f:1c"
    assert first.rssi == -53 and first.channel == 10
    remote_id = "0000fffa-0000-1000-8000-00805f9b34fb"  # ASTM F3411 Remote ID service data
    with_id = 0
    for r in recs:
        s = sightings_from_air(r)
        assert not isinstance(s, Rejection)
        assert all(x.address_kind == "public" and x.channel == r.channel for x in s)
        advert = parse_ad(r.data)
        assert not isinstance(advert, Rejection)
        with_id += remote_id in advert.service_data
    assert with_id >= 240


@pytest.mark.skipif(not BTSNOOP.exists(), reason="AGPL btsnoop log lives only in ../shared")
def test_btsnoop_extended_reports() -> None:
    reports = list(iter_btsnoop_reports(BTSNOOP.read_bytes()))
    assert len(reports) == 290 and all(isinstance(r, AirAdvert) for r in reports)
    assert len({r.address for r in reports if isinstance(r, AirAdvert)}) == 10
    kinds: Counter[str] = Counter()
    for r in reports:
        assert isinstance(r, AirAdvert)
        assert 1.7e9 < r.ts < 1.8e9  # Dec 2024, converted from the btsnoop epoch
        s = sightings_from_air(r)
        assert not isinstance(s, Rejection)
        kinds.update(x.kind for x in s)
    assert kinds["ibeacon"] == 54 and kinds["microsoft_cdp"] == 15


def test_beacontools_hci_vectors() -> None:
    vectors = json.loads((DATA / "beacontools_hci_event_vectors.json").read_text())["vectors"]
    assert len(vectors) == 4
    for v in vectors:
        event = bytes.fromhex(v["hci_event_hex"])[1:]  # drop the H4 indicator byte
        (rec,) = list(hci_event_reports(event, 1.0))
        assert isinstance(rec, AirAdvert)
        assert format_mac(rec.address) == v["expected"]["bt_addr"]
        assert rec.rssi == v["expected"]["rssi"]
        s = sightings_from_air(rec)
        assert not isinstance(s, Rejection) and s
    # The TLM vector is self-consistent end to end: decode it fully.
    (rec,) = list(hci_event_reports(bytes.fromhex(vectors[0]["hci_event_hex"])[1:], 1.0))
    assert isinstance(rec, AirAdvert) and rec.pdu == "ADV_NONCONN_IND"
    s = sightings_from_air(rec)
    assert not isinstance(s, Rejection)
    assert [(x.kind, x.fields["adv_count"], x.fields["battery_mv"]) for x in s] == [
        ("eddystone_tlm", 5223, 2840)]
    # (The UID and Estimote vectors carry AD lengths shorter than their frames upstream;
    # beacontools ignores AD lengths, our AD parser does not, so only the HCI layer is compared.)


def test_ll_251_and_extended_header_fields() -> None:
    # Hand-built AUX_ADV_IND: AdvA + ADI + TxPower, random address, then Flags AD.
    adva = bytes.fromhex("c1c2c3c4c5c6")
    ext = bytes([0x01 | 0x08 | 0x40]) + adva[::-1] + b"\x34\x12" + bytes([0xF4])
    payload = bytes([len(ext)]) + ext + b"\x02\x01\x06"
    ll = bytes.fromhex("d6be898e") + bytes([0x47, len(payload)]) + payload + b"\0\0\0"
    rec = parse_ll_record(ll, 251, 5.0)
    assert isinstance(rec, AirAdvert)
    assert (rec.address, rec.address_type, rec.tx_power, rec.data) == (
        adva, "random", -12, b"\x02\x01\x06")
    assert parse_ll_record(bytes.fromhex("11223344") + ll[4:], 251, 5.0) is None  # data AA
    assert parse_ll_record(ll[:-4], 251, 5.0) == Rejection(Radio.BLE, "ll_truncated")
    # ADV_EXT_IND with only ADI + AuxPtr: no advertiser here.
    assert parse_pdu(bytes([0x07, 7, 6, 0x18, 1, 2, 3, 4, 5]), 0.0, 37, None) is None
    assert parse_pdu(bytes([0x07, 3, 9, 0x01, 1]), 0.0, 37, None) == \
        Rejection(Radio.BLE, "ext_header_overrun")
    assert [rf_to_channel_index(x) for x in (0, 1, 11, 12, 13, 38, 39, 40)] == \
        [37, 0, 10, 38, 11, 36, 39, None]


@budget(300)
@given(st.binary(max_size=80), st.sampled_from([251, 256, 272, 1]))
def test_fuzz_ll_never_raises(data: bytes, linktype: int) -> None:
    rec = parse_ll_record(data, linktype, 0.0)
    if isinstance(rec, AirAdvert):
        assert len(rec.address) == 6 and len(rec.data) <= 255


@budget(300)
@given(st.binary(max_size=120))
def test_fuzz_hci_never_raises(data: bytes) -> None:
    list(hci_event_reports(b"\x3e" + data, 0.0))
    list(iter_btsnoop_reports(b"btsnoop\0\0\0\0\x01\0\0\x03\xea" + data))


def test_bit_flipped_real_frames_never_raise() -> None:
    rng = random.Random(4)
    frames = [bytes(d) for d in _raw_frames(DATA / "take_2__ble_all_adv.pcap")]
    outcomes: Counter[str] = Counter()
    for _ in range(3000):
        f = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(f))
            f[i] ^= 1 << rng.randrange(8)
        rec = parse_ll_record(bytes(f[: rng.randint(0, len(f))]), 256, 0.0)
        outcomes[type(rec).__name__] += 1
        if isinstance(rec, AirAdvert):
            sightings_from_air(rec)
    assert outcomes["Rejection"] > 0 and outcomes["AirAdvert"] > 0


def _raw_frames(path: Path) -> list[bytes]:
    from scapy.utils import RawPcapReader
    with RawPcapReader(str(path)) as r:
        return [d for d, _ in r]


async def test_driver_replays_and_counts(tmp_path: Path) -> None:
    sink = ListSink()
    paths = [str(DATA / "take_2__ble_all_adv.pcap"), str(DATA / "odid_bt5_lr_sample.pcapng")]
    drv = BlePcapDriver("air", paths, sensor="s1")
    await drv.run(sink)
    assert drv.adverts == 117 + 22 + 1 + 48 + 244 - sum(
        v for k, v in drv.rejections.items() if k.startswith("ad_"))
    assert sink.rejections == drv.rejections
    assert drv.rejections["crc_bad"] == 30 and drv.rejections["ll_bad_pdu_type"] == 2
    assert drv.skipped == 31
    assert sink.sightings and all(s.sensor == "s1" for s in sink.sightings)
    ts = [s.ts for s in sink.sightings[:50]]
    assert ts == sorted(ts) and 1.7e9 < ts[0] < 1.8e9  # capture time, in file order
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"nonsense")
    with pytest.raises(DriverError) as err:
        await BlePcapDriver("air", [str(bad)]).run(ListSink())
    assert err.value.reason == "capture_unreadable"
