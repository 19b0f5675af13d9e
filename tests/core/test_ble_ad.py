"""AD-structure parser: golden test over bluetooth-data-tools' own test vectors (Apache-2.0).

Every vector's payloads (advertising data, scan response) go through `parse_ad`; the result must
equal, field by field, what bluetooth-data-tools asserts. A `Rejection` (a length running past
the data) is only acceptable where upstream found nothing at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from presence_gateway.cli.decode import advert_json
from presence_gateway.core.ble.decode import REJECT_OVERRUN, Advert, address_kind, parse_ad
from presence_gateway.core.model import AddressKind, Rejection

DATA = Path(__file__).resolve().parents[1] / "data" / "ble"
GAP = json.loads((DATA / "bluetooth_data_tools_gap_vectors.json").read_text())["vectors"]


def _payloads(vector: dict[str, Any]) -> tuple[bytes, bytes]:
    parts = [bytes.fromhex(h) for h in vector["ad_payloads_hex"]]
    assert 1 <= len(parts) <= 2
    return parts[0], parts[1] if len(parts) > 1 else b""


@pytest.mark.parametrize("vector", GAP, ids=[v["test"] for v in GAP])
def test_gap_vector(vector: dict[str, Any]) -> None:
    result = parse_ad(*_payloads(vector))
    expected = {k: v for k, v in vector["expected"].items() if k in advert_json(Advert())}
    if isinstance(result, Rejection):
        assert result is REJECT_OVERRUN
        empty = advert_json(Advert())
        assert all(expected[k] == empty[k] for k in expected), "rejected a vector with content"
        return
    got = advert_json(result)
    for key, value in expected.items():
        assert got[key] == value, key


def test_vectors_cover_the_overrun_rejection() -> None:
    rejected = [v["test"] for v in GAP if isinstance(parse_ad(*_payloads(v)), Rejection)]
    assert rejected == ["test_out_of_bounds_length", "test_manufacturer_data_short_by_four"]


def test_split_and_joined_payloads_agree() -> None:
    joined = parse_ad(bytes.fromhex("".join(GAP[1]["ad_payloads_hex"])))
    split = parse_ad(*_payloads(GAP[1]))
    assert joined == split


def test_scan_response_overrides_advertising_data() -> None:
    adv = bytes.fromhex("020a04" + "05ff4c000102")
    scan = bytes.fromhex("020af6" + "05ff4c000304")
    result = parse_ad(adv, scan)
    assert isinstance(result, Advert)
    assert result.tx_power == -10
    assert result.manufacturer_data == {0x004C: b"\x03\x04"}


def test_tx_power_longer_than_one_byte_is_ignored() -> None:
    # bluetooth-data-tools skips a TX Power Level structure that is not exactly one octet; an
    # earlier valid value (advertising data) is kept over a malformed one (scan response).
    for bad in ("030af600", "040a7f0000"):
        result = parse_ad(bytes.fromhex(bad))
        assert isinstance(result, Advert) and result.tx_power is None, bad
    kept = parse_ad(bytes.fromhex("020af6"), bytes.fromhex("030a0400"))
    assert isinstance(kept, Advert) and kept.tx_power == -10


def test_bytearray_and_memoryview_are_accepted() -> None:
    raw = bytes.fromhex("020ace")
    assert parse_ad(bytearray(raw)) == parse_ad(raw) == parse_ad(memoryview(raw))  # type: ignore[arg-type]


def test_not_bytes_is_rejected() -> None:
    result = parse_ad(12345)  # type: ignore[arg-type]
    assert isinstance(result, Rejection)
    assert result.reason == "ad_not_bytes"


@pytest.mark.parametrize(
    ("address", "address_type", "kind"),
    [
        ("c0ffee000001", "random", AddressKind.STATIC),
        ("7a0000000001", "random", AddressKind.RESOLVABLE),
        ("3a0000000001", "random", AddressKind.RANDOM),
        ("8a0000000001", "random", AddressKind.UNKNOWN),
        ("c0ffee000001", "public", AddressKind.PUBLIC),
        ("c0ffee0000", "random", AddressKind.UNKNOWN),
        ("c0ffee000001", "bogus", AddressKind.UNKNOWN),
    ],
)
def test_address_kind(address: str, address_type: str, kind: AddressKind) -> None:
    assert address_kind(bytes.fromhex(address), address_type) is kind


def test_fast_constructors_build_the_same_values() -> None:
    from presence_gateway.core.ble.types import Decoded, advert, decoded

    assert decoded("ibeacon", {"major": 1}, ("h",)) == Decoded("ibeacon", {"major": 1}, ("h",))
    assert advert("n", {1: b"x"}, {}, ("u",), -3) == Advert("n", {1: b"x"}, {}, ("u",), -3)
