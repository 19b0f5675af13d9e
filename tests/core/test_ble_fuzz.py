"""Property tests: no byte string makes the AD parser or any format decoder raise.

Each decoder gets random payloads and payloads that start with its own magic bytes (so the
fuzzer reaches the deep paths, not only the "not my format" exit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.ble import apple as ble_apple
from presence_gateway.core.ble import beacons as ble_beacons
from presence_gateway.core.ble import vendors as ble_vendors
from presence_gateway.core.ble.decode import Advert, Decoded, decode, parse_ad, to_sightings
from presence_gateway.core.ble.types import uuid16
from presence_gateway.core.model import Rejection
from tests.fuzzing import budget

FAST = budget(400)


def _prefixed(*prefixes: bytes) -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda p, rest: p + rest, st.sampled_from(prefixes), st.binary(max_size=40)
    ) | st.binary(max_size=40)


def _ok(result: Any) -> None:
    assert result is None or isinstance(result, Decoded | str | tuple)
    if isinstance(result, tuple):
        assert all(isinstance(d, Decoded) for d in result)


@FAST
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_parse_ad_never_raises(adv: bytes, scan: bytes) -> None:
    result = parse_ad(adv, scan)
    assert isinstance(result, Advert | Rejection)
    if isinstance(result, Advert):
        assert decode(result)  # never empty


# Structured AD: valid length framing around random type/body, so the walk reaches every type.
_structure = st.builds(
    lambda t, body: bytes([len(body) + 1, t]) + body,
    st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x16, 0x20])
    | st.sampled_from([0x21, 0xFF]),
    st.binary(max_size=29),
)


@FAST
@given(st.lists(_structure, max_size=4))
def test_framed_ad_parses_and_decodes(structures: list[bytes]) -> None:
    result = parse_ad(b"".join(structures))
    assert isinstance(result, Advert)
    sightings = to_sightings(0.0, b"\xc0\x00\x00\x00\x00\x01", "random", -60, result)
    assert sightings and all(s.kind for s in sightings)


_DECODERS: list[tuple[Callable[[bytes], Any], tuple[bytes, ...]]] = [
    (
        ble_apple.decode_apple,
        (b"\x02\x15", b"\x10", b"\x07\x19\x01", b"\x12\x19", b"\x01", b"\x06"),
    ),
    (ble_beacons.altbeacon, (b"\xbe\xac",)),
    (ble_beacons.eddystone, (b"\x00", b"\x10", b"\x20\x00", b"\x20\x01", b"\x30")),
    (ble_vendors.microsoft, (b"\x01", b"\x03\x00\x80", b"\x03\x01\x80", b"\x03\x02\x80")),
    (ble_vendors.samsung, (b"\x42",)),
    (ble_vendors.fast_pair, (b"\x00",)),
    (ble_vendors.exposure_notification, (b"",)),
]


@FAST
@given(st.data())
def test_each_decoder_never_raises(data: st.DataObject) -> None:
    for decoder, prefixes in _DECODERS:
        _ok(decoder(data.draw(_prefixed(*prefixes))))


@FAST
@given(
    st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=30), max_size=3),
    st.dictionaries(
        st.sampled_from([uuid16(0xFEAA), uuid16(0xFD6F), uuid16(0xFE2C), uuid16(0x180F)]),
        st.binary(max_size=30),
        max_size=3,
    ),
)
def test_decode_never_raises(mfr: dict[int, bytes], svc: dict[str, bytes]) -> None:
    found = decode(Advert(manufacturer_data=mfr, service_data=svc))
    assert found and all(isinstance(d, Decoded) for d in found)
