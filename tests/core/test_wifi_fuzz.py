"""Fuzzing gateway.core.wifi: it never raises, and on scapy-built frames it agrees with scapy.

Frames are random bytes, random RadioTap layouts, and probe requests built by scapy from random
addresses, SSIDs, element lists, signal and channel, then truncated or corrupted.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dot11 import Dot11, Dot11Elt, Dot11ProbeReq, RadioTap

from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.core.wifi.frames import parse_record
from tests.core.wifi_oracle import our_fields, scapy_fields
from tests.fuzzing import budget

LINKTYPES = st.sampled_from([105, 119, 127, 163, 0x3000007F, 1, 0xFFFFFFFF])
FAST = budget(400)
SCAPY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid(result: Sighting | Rejection | None) -> None:
    assert result is None or isinstance(result, (Sighting, Rejection))
    if isinstance(result, Sighting):
        assert len(result.address) == 6
        assert result.rssi is None or -128 <= result.rssi <= 127
        assert result.seq is None or 0 <= result.seq < 4096
        assert "ssid" not in result.fields
    if isinstance(result, Rejection):
        assert result.reason and result.reason.isidentifier()


@FAST
@given(data=st.binary(max_size=400), linktype=LINKTYPES)
def test_random_bytes_never_raise(data: bytes, linktype: int) -> None:
    _valid(parse_record(data, linktype, 0.0))


@FAST
@given(words=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=4),
       fields=st.binary(max_size=80), frame=st.binary(max_size=120),
       hlen_delta=st.integers(-8, 8))
def test_random_radiotap_layouts_never_raise(
    words: list[int], fields: bytes, frame: bytes, hlen_delta: int
) -> None:
    """Presence words with random bits (extensions, namespaces, vendor data, unknown fields)."""
    for i in range(len(words) - 1):
        words[i] |= 0x80000000
    words[-1] &= 0x7FFFFFFF
    hlen = max(0, min(0xFFFF, 4 + 4 * len(words) + len(fields) + hlen_delta))
    data = struct.pack("<BBH", 0, 0, hlen) + struct.pack(f"<{len(words)}I", *words)
    _valid(parse_record(data + fields + frame, 127, 0.0))


MAC = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
# scapy dissects these ids with fixed-layout classes that cannot represent arbitrary contents
# (e.g. a zero-length DS element becomes Raw): random contents go to the other ids, and the
# specialised ones appear with well-formed contents only.
_SCAPY_TYPED = {0, 1, 3, 7, 37, 42, 45, 48, 50, 61, 74, 192, 221, 255}
ELEMENT = st.one_of(
    st.tuples(st.integers(1, 254).filter(lambda i: i not in _SCAPY_TYPED), st.binary(max_size=40)),
    st.tuples(st.sampled_from([1, 50]), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just(3), st.binary(min_size=1, max_size=1)),
    st.tuples(st.just(45), st.binary(min_size=26, max_size=26)),
    st.tuples(st.just(221), st.binary(max_size=20).map(lambda b: b"\x00\x17\xf2" + b)),
)


@st.composite
def probe_requests(draw: st.DrawFn) -> bytes:
    elements = Dot11Elt(ID=0, info=draw(st.binary(max_size=32)))
    for eid, info in draw(st.lists(ELEMENT, max_size=8)):
        elements = elements / Dot11Elt(ID=eid, info=info)
    dot11 = (Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=draw(MAC),
                   addr3="ff:ff:ff:ff:ff:ff", SC=draw(st.integers(0, 0xFFFF)))
             / Dot11ProbeReq() / elements)
    present = draw(st.sampled_from(["Channel+dBm_AntSignal", "Flags+Rate+Channel+dBm_AntSignal",
                                    "TSFT+Flags+Channel+dBm_AntSignal+Antenna", "dBm_AntSignal"]))
    radiotap = RadioTap(present=present, ChannelFrequency=draw(st.sampled_from(
        [2412, 2437, 2462, 2484, 5180, 5745, 5975])), dBm_AntSignal=draw(st.integers(-128, 127)))
    if "Flags" in present:
        radiotap.Flags = 0
    return bytes(radiotap / dot11)


@SCAPY
@given(frame=probe_requests())
def test_scapy_built_probes_agree_with_scapy(frame: bytes) -> None:
    expected = scapy_fields(frame, 127)
    assert isinstance(expected, dict)
    assert our_fields(parse_record(frame, 127, 0.0)) == expected


@SCAPY
@given(frame=probe_requests(), cut=st.integers(0, 400))
def test_truncated_probes_are_refused_or_agree(frame: bytes, cut: int) -> None:
    short = frame[:min(cut, len(frame))]
    result = parse_record(short, 127, 0.0)
    _valid(result)
    expected = scapy_fields(short, 127)
    if isinstance(expected, dict):  # cut on an element boundary: still a whole probe
        assert our_fields(result) == expected
    else:
        assert isinstance(result, Rejection)


@SCAPY
@given(frame=probe_requests(), pos=st.integers(0, 400), value=st.integers(0, 255))
def test_corrupted_probes_never_raise(frame: bytes, pos: int, value: int) -> None:
    data = bytearray(frame)
    data[pos % len(data)] = value
    _valid(parse_record(bytes(data), 127, 0.0))
