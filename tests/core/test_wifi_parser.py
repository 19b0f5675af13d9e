"""gateway.core.wifi / radiotap: golden CSVs, hand-built radio headers, frame kinds, fingerprint.

The Brno CSVs are the upstream project's own per-frame decoding (src, rssi, seq_num, ch_freq,
dot11elt, oui, randomized): every row is compared with our parse of the same pcap frame.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import struct
from pathlib import Path

import pytest
from scapy.layers.dot11 import (
    Dot11,
    Dot11AssoReq,
    Dot11Beacon,
    Dot11Elt,
    Dot11EltRates,
    Dot11ProbeReq,
    Dot11ProbeResp,
    Dot11ReassoReq,
    PrismHeader,
    RadioTap,
)
from scapy.packet import Packet, Raw

from presence_gateway.core.model import AddressKind, Radio, Rejection, Sighting
from presence_gateway.core.privacy import format_mac
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.core.wifi.radiotap import channel_of
from tests.core.wifi_oracle import BUNDLED, SHARED_WIFI, records

STA = "da:a1:19:00:00:01"  # locally administered
HT = bytes.fromhex("2d1a6f0117ffff0000000000000000000000000000000000000000")[2:]


def _probe(ssid: bytes = b"", ds: int = 1, ht: bytes = HT, vendor: bytes = b"\x01\x02") -> Packet:
    return (Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=STA,
                  addr3="ff:ff:ff:ff:ff:ff", SC=0x1230)
            / Dot11ProbeReq() / Dot11Elt(ID=0, info=ssid)
            / Dot11EltRates(rates=[0x02, 0x04, 0x0B, 0x16])
            / Dot11Elt(ID=3, info=bytes([ds])) / Dot11Elt(ID=45, info=ht)
            / Dot11Elt(ID=221, info=b"\x00\x50\xf2\x08" + vendor))


def _rt(words: list[int], fields: bytes, frame: bytes) -> bytes:
    """A RadioTap header from presence words and already-aligned field bytes."""
    hlen = 4 + 4 * len(words) + len(fields)
    return struct.pack("<BBH", 0, 0, hlen) + struct.pack(f"<{len(words)}I", *words) + fields + frame


def _ok(result: Sighting | Rejection | None) -> Sighting:
    assert isinstance(result, Sighting), result
    return result


# ---- golden: the Brno CSVs -------------------------------------------------------------------

def _brno_days() -> list[tuple[Path, Path]]:
    days = [(BUNDLED / "position_1_sc6-61_2023-04-17_anonymized.pcap",
             BUNDLED / "position_1_sc6-61_2023-04-17_ver-99.csv")]
    brno = SHARED_WIFI / "brno_sc6-61"
    for day in ("2023-02-16", "2023-02-28"):
        days.append((brno / f"position_1_sc6-61_{day}_anonymized.pcap",
                     brno / f"position_1_sc6-61_{day}_ver-99.csv"))
    return days


@pytest.mark.parametrize("pcap,table", _brno_days(), ids=lambda p: p.name[19:29])
def test_brno_golden_csv(pcap: Path, table: Path) -> None:
    if not pcap.exists():
        pytest.skip(f"{pcap} absent (shared captures not mounted)")
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    frames = list(records(pcap))
    assert len(rows) == len(frames) > 0
    for row, (data, linktype) in zip(rows, frames, strict=True):
        s = _ok(parse_record(data, linktype, 0.0))
        where = f"row {row['idx']}"
        assert format_mac(s.address) == row["src"], where
        assert s.rssi == int(row["rssi"]), where
        assert s.seq == int(row["seq_num"]), where
        assert s.fields["freq"] == int(row["ch_freq"]), where
        assert s.channel == (int(row["ch_freq"]) - 2407) // 5, where
        assert s.fields["ie_ids"] == tuple(ast.literal_eval(row["dot11elt"])), where
        assert s.fields["vendor_ouis"] == tuple(ast.literal_eval(row["oui"])), where
        assert (s.address_kind is AddressKind.RANDOM) == (row["randomized"] == "1"), where
        assert s.fields["ssid_directed"] == (row["ssid"] != ""), where


# ---- RadioTap walking ----------------------------------------------------------------------

FLAGS, CHANNEL, SIGNAL, ANTENNA, TSFT, XCHANNEL = 1 << 1, 1 << 3, 1 << 5, 1 << 11, 1, 1 << 18
NS, VENDOR, EXT = 1 << 29, 1 << 30, 1 << 31
CH6 = struct.pack("<HH", 2437, 0x00A0)


def test_per_antenna_namespaces_use_the_combined_signal() -> None:
    # iwlwifi layout: combined value first, then one radiotap namespace per antenna
    fields = b"\x00\x00" + CH6 + b"\xd8" + b"\xd3\x00" + b"\xce\x01"  # -40 | -45 a0 | -50 a1
    frame = _rt([FLAGS | CHANNEL | SIGNAL | NS | EXT, SIGNAL | ANTENNA | NS | EXT,
                 SIGNAL | ANTENNA], fields, bytes(_probe()))
    s = _ok(parse_record(frame, 127, 1.0))
    assert (s.rssi, s.fields["freq"], s.channel) == (-40, 2437, 6)


def test_per_antenna_only_takes_the_first_antenna() -> None:
    frame = _rt([CHANNEL | NS | EXT, SIGNAL | ANTENNA | NS | EXT, SIGNAL | ANTENNA],
                CH6 + b"\xd3\x00\xce\x01", bytes(_probe()))
    assert _ok(parse_record(frame, 127, 1.0)).rssi == -45


def test_vendor_namespace_is_skipped_by_its_length() -> None:
    # flags, channel, then a vendor namespace (OUI, subns, skip 5 + 5 bytes), then back to
    # radiotap with a signal that sits after the vendor data
    vendor = b"\x00\x11\x22\x01" + struct.pack("<H", 5) + b"\x99" * 5
    fields = b"\x00\x00" + CH6 + vendor + b"\xbf"  # -65
    frame = _rt([FLAGS | CHANNEL | VENDOR | EXT, 0x7 | NS | EXT, SIGNAL], fields, bytes(_probe()))
    s = _ok(parse_record(frame, 127, 1.0))
    assert (s.rssi, s.fields["freq"]) == (-65, 2437)


def test_vendor_namespace_running_past_the_header_is_refused() -> None:
    vendor = b"\x00\x11\x22\x01" + struct.pack("<H", 200)
    frame = _rt([FLAGS | CHANNEL | VENDOR | EXT, NS | EXT, SIGNAL], b"\x00\x00" + CH6 + vendor
                + b"\xbf", bytes(_probe()))
    assert parse_record(frame, 127, 1.0) == Rejection(Radio.WIFI, "truncated_radiotap")


def test_alignment_of_tsft_and_channel() -> None:
    fields = struct.pack("<Q", 123456789) + b"\x00\x00" + CH6 + b"\xc4"  # -60
    s = _ok(parse_record(_rt([TSFT | FLAGS | CHANNEL | SIGNAL], fields, bytes(_probe())), 127, 0))
    assert (s.rssi, s.channel) == (-60, 6)
    # same fields after an extended bitmap: 8 bytes of presence words move TSFT to offset 16
    ext = _rt([TSFT | FLAGS | CHANNEL | SIGNAL | EXT, 0], b"\x00" * 4 + fields, bytes(_probe()))
    assert _ok(parse_record(ext, 127, 0)).rssi == -60


def test_unknown_field_stops_the_walk_but_keeps_what_was_read() -> None:
    # bit 32 of the radiotap namespace is undefined (tcpdump prints "[bit 32]")
    frame = _rt([CHANNEL | SIGNAL | EXT, 1], CH6 + b"\xc4\x77\x77", bytes(_probe()))
    s = _ok(parse_record(frame, 127, 0))
    assert (s.rssi, s.fields["freq"]) == (-60, 2437)


def test_xchannel_when_channel_is_absent() -> None:
    xch = struct.pack("<IHBB", 0x100, 5745, 149, 20)
    s = _ok(parse_record(_rt([XCHANNEL], xch, bytes(_probe())), 127, 0))
    assert (s.fields["freq"], s.channel, s.rssi) == (5745, 149, None)


@pytest.mark.parametrize("freq,channel", [(2412, 1), (2484, 14), (5180, 36), (5745, 149),
                                          (5955, 1), (5975, 5), (7115, 233), (5935, 2)])
def test_channel_numbers(freq: int, channel: int) -> None:
    assert channel_of(freq) == channel


def test_fcs_flags() -> None:
    probe = bytes(_probe())
    with_fcs = bytes(RadioTap(present="Flags", Flags="FCS") / Raw(probe + b"\xdd\x05\x01\x02"))
    s = _ok(parse_record(with_fcs, 127, 0))  # the 4 FCS bytes are not read as an element
    assert s.fields["ie_ids"] == (0, 1, 3, 45, 221)
    bad = bytes(RadioTap(present="Flags", Flags="FCS+badFCS") / Raw(probe + b"\x00" * 4))
    assert parse_record(bad, 127, 0) == Rejection(Radio.WIFI, "bad_fcs")


def test_pcap_linktype_fcs_bits_are_masked() -> None:
    frame = bytes(RadioTap(present="dBm_AntSignal", dBm_AntSignal=-70) / _probe())
    assert _ok(parse_record(frame, 0x3000007F, 0)).rssi == -70


@pytest.mark.parametrize("frame,reason", [
    (b"\x00\x00\x08", "truncated_radiotap"),
    (b"\x00\x00\x40\x00\x00\x00\x00\x00", "truncated_radiotap"),
    (b"\x01\x00\x08\x00\x00\x00\x00\x00", "bad_radiotap_version"),
    (b"\x00\x00\x08\x00\x00\x00\x00\x00" + b"\x40\x00" + b"\x00" * 10, "truncated_80211"),
    (b"\x00\x00\x08\x00\x00\x00\x00\x00" + b"\x41\x00" + b"\x00" * 30, "bad_80211_version"),
    (b"\x00\x00\x08\x00\x00\x00\x00\x00" + bytes(_probe())[:-3], "truncated_ie"),
])
def test_rejections(frame: bytes, reason: str) -> None:
    assert parse_record(frame, 127, 0) == Rejection(Radio.WIFI, reason)


def test_unsupported_linktype() -> None:
    assert parse_record(bytes(_probe()), 1, 0) == Rejection(Radio.WIFI, "unsupported_linktype")


# ---- other radio headers ---------------------------------------------------------------------

def test_plain_80211_takes_the_channel_from_the_ds_element() -> None:
    s = _ok(parse_record(bytes(_probe(ds=11)), 105, 5.0, sensor="s1"))
    assert (s.rssi, s.channel, s.fields["freq"], s.ts, s.sensor) == (None, 11, None, 5.0, "s1")


def test_prism_header() -> None:
    frame = bytes(PrismHeader(channel=6, signal=-55) / _probe())
    s = _ok(parse_record(frame, 119, 0))
    assert (s.rssi, s.channel, s.fields["freq"]) == (-55, 6, 2437)
    assert parse_record(frame[:100], 119, 0) == Rejection(Radio.WIFI, "truncated_prism")


def _avs(channel: int, ssi_type: int, signal: int) -> bytes:
    return struct.pack(">IIQQIIIIIIiIII", 0x80211001, 64, 0, 0, 1, channel, 10, 0, 0,
                       ssi_type, signal, 0, 0, 0)


def test_avs_header_on_its_own_and_behind_a_prism_linktype() -> None:
    frame = _avs(36, 2, -71) + bytes(_probe())
    for linktype in (163, 119):
        s = _ok(parse_record(frame, linktype, 0))
        assert (s.rssi, s.channel, s.fields["freq"]) == (-71, 36, 5180)
    assert _ok(parse_record(_avs(36, 1, 40) + bytes(_probe()), 163, 0)).rssi is None
    assert parse_record(_avs(36, 2, -71)[:40], 163, 0) == Rejection(Radio.WIFI, "truncated_avs")


# ---- 802.11 frame kinds ---------------------------------------------------------------------

def _rtap(pkt: Packet) -> bytes:
    return bytes(RadioTap(present="Channel+dBm_AntSignal", ChannelFrequency=2412,
                          dBm_AntSignal=-50) / pkt)


def test_probe_request_sighting() -> None:
    s = _ok(parse_record(_rtap(_probe(ssid=b"cafe")), 127, 7.5))
    assert s.radio is Radio.WIFI and s.kind == "probe_request"
    assert (format_mac(s.address), s.address_kind, s.seq, s.ssid) == (
        STA, AddressKind.RANDOM, 0x123, b"cafe")
    assert s.fields["ssid_directed"] is True and s.fields["vendor_ouis"] == (0x0050F2,)
    assert b"cafe" not in repr(s.fields).encode()
    wildcard = _ok(parse_record(_rtap(_probe()), 127, 0))
    assert wildcard.ssid is None and wildcard.fields["ssid_directed"] is False


def test_public_address_kind() -> None:
    pkt = _probe()
    pkt.addr2 = "00:11:22:33:44:55"
    assert _ok(parse_record(_rtap(pkt), 127, 0)).address_kind is AddressKind.PUBLIC


def test_htc_order_bit_shifts_the_elements() -> None:
    raw = bytearray(bytes(_probe()))
    raw[1] |= 0x80
    frame = bytes(raw[:24]) + b"\x00\x00\x00\x00" + bytes(raw[24:])
    s = _ok(parse_record(frame, 105, 0))
    assert s.fields["ie_ids"] == (0, 1, 3, 45, 221)


def test_association_requests_are_client_frames() -> None:
    hdr = Dot11(type=0, subtype=0, addr1="00:11:22:33:44:55", addr2=STA, addr3="00:11:22:33:44:55")
    assoc = hdr / Dot11AssoReq() / Dot11Elt(ID=0, info=b"shop") / Dot11EltRates(rates=[2, 4])
    s = _ok(parse_record(_rtap(assoc), 127, 0))
    assert (s.kind, s.ssid, s.fields["ie_ids"]) == ("association_request", b"shop", (0, 1))
    hdr.subtype = 2
    reassoc = hdr / Dot11ReassoReq(current_AP="00:11:22:33:44:66") / Dot11Elt(ID=0, info=b"shop")
    s = _ok(parse_record(_rtap(reassoc), 127, 0))
    assert s.kind == "association_request" and s.fields["reassociation"] is True
    probe = _ok(parse_record(_rtap(_probe()), 127, 0))
    assert probe.fingerprint != s.fingerprint


def test_null_data_only_from_stations() -> None:
    to_ap = Dot11(type=2, subtype=4, FCfield=1, addr1="00:11:22:33:44:55", addr2=STA,
                  addr3="00:11:22:33:44:55", SC=0x50)
    s = _ok(parse_record(_rtap(to_ap), 127, 0))
    assert (s.kind, format_mac(s.address), s.seq, s.fingerprint) == ("null_data", STA, 5, None)
    qos = bytes(Dot11(type=2, subtype=12, FCfield=1, addr2=STA)) + b"\x00\x00"
    assert _ok(parse_record(qos, 105, 0)).kind == "null_data"
    from_ap = Dot11(type=2, subtype=4, FCfield=2, addr2="00:11:22:33:44:55")
    assert parse_record(_rtap(from_ap), 127, 0) is None


@pytest.mark.parametrize("pkt", [
    Dot11(type=0, subtype=8, addr2="00:11:22:33:44:55") / Dot11Beacon() / Dot11Elt(ID=0),
    Dot11(type=0, subtype=5, addr2="00:11:22:33:44:55") / Dot11ProbeResp() / Dot11Elt(ID=0),
    Dot11(type=1, subtype=13, addr1="00:11:22:33:44:55"),
    Dot11(type=2, subtype=0, FCfield=1, addr2=STA) / Raw(b"payload"),
], ids=["beacon", "probe_response", "ack", "data"])
def test_frames_that_do_not_reveal_a_client(pkt: Packet) -> None:
    assert parse_record(_rtap(pkt), 127, 0) is None


# ---- fingerprint -----------------------------------------------------------------------------

def test_fingerprint_ignores_ssid_channel_and_unstable_contents() -> None:
    base = _ok(parse_record(_rtap(_probe()), 127, 0)).fingerprint
    assert base is not None and len(base) == 16
    fewer_streams = HT[:3] + b"\xff\x00" + HT[5:]  # MCS set: one spatial stream instead of two
    for variant in (_probe(ssid=b"home"), _probe(ds=11), _probe(vendor=b"\x77\x77\x77"),
                    _probe(ht=fewer_streams)):
        assert _ok(parse_record(_rtap(variant), 127, 0)).fingerprint == base


def test_fingerprint_follows_capabilities_and_order() -> None:
    base = _ok(parse_record(_rtap(_probe()), 127, 0)).fingerprint
    other_ht = b"\x2d\x40" + HT[2:]  # HT capability info differs
    assert _ok(parse_record(_rtap(_probe(ht=other_ht)), 127, 0)).fingerprint != base
    reordered = (Dot11(type=0, subtype=4, addr2=STA) / Dot11ProbeReq() / Dot11Elt(ID=0)
                 / Dot11Elt(ID=45, info=HT) / Dot11Elt(ID=3, info=b"\x01")
                 / Dot11EltRates(rates=[2, 4, 11, 22])
                 / Dot11Elt(ID=221, info=b"\x00\x50\xf2\x08\x01"))
    assert _ok(parse_record(_rtap(reordered), 127, 0)).fingerprint != base


def test_fast_constructor_builds_an_ordinary_sighting() -> None:
    s = _ok(parse_record(_rtap(_probe(ssid=b"x")), 127, 3.0, sensor="door"))
    plain = Sighting(**{f.name: getattr(s, f.name) for f in dataclasses.fields(Sighting)})
    assert s == plain and type(s) is Sighting
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rssi = 0  # type: ignore[misc]
    assert dataclasses.replace(s, rssi=-1).rssi == -1
