"""The JSONL recording format: parsing, rejection reasons, and the writer's round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.ble.decode import parse_ad
from presence_gateway.core.ble.record import (
    format_recording_line,
    normalize_uuid_key,
    parse_recording_line,
)
from presence_gateway.core.ble.types import Advert
from presence_gateway.core.model import Rejection

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "captures"
GAP = SHARED / "ble" / "vectors" / "bluetooth_data_tools_gap_vectors.json"

LINE = {
    "ts": 1767225600.25, "address": "C0:DE:00:00:00:01", "address_type": "random", "rssi": -61,
    "manufacturer_data": {"76": "0215" + "00" * 21},
    "service_data": {"feaa": "00e7", "0000fd6f-0000-1000-8000-00805f9b34fb": ""},
    "service_uuids": ["180f", "0000fe9f"], "local_name": "x", "tx_power": 4, "channel": 37,
}


def _line(**changes: Any) -> str:
    d = {**LINE, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...})


def test_full_line() -> None:
    rec = parse_recording_line(_line())
    assert not isinstance(rec, Rejection)
    ts, address, address_type, rssi, advert, channel = rec
    assert (ts, address, address_type, rssi, channel) == (
        1767225600.25, bytes.fromhex("c0de00000001"), "random", -61, 37)
    assert advert.manufacturer_data == {76: bytes.fromhex("0215" + "00" * 21)}
    assert advert.service_data == {
        "0000feaa-0000-1000-8000-00805f9b34fb": b"\x00\xe7",
        "0000fd6f-0000-1000-8000-00805f9b34fb": b"",
    }
    assert advert.service_uuids == ("0000180f-0000-1000-8000-00805f9b34fb",
                                    "0000fe9f-0000-1000-8000-00805f9b34fb")
    assert (advert.local_name, advert.tx_power) == ("x", 4)


def test_minimal_line_defaults() -> None:
    rec = parse_recording_line(b'{"ts": 5, "address": "aabbccddeeff"}')
    assert not isinstance(rec, Rejection)
    assert rec[:4] == (5.0, bytes.fromhex("aabbccddeeff"), "unknown", None)
    assert rec[4] == Advert() and rec[5] is None


@pytest.mark.parametrize(("line", "reason"), [
    ("", "record_bad_json"),
    ("{", "record_bad_json"),
    ("[1]", "record_not_object"),
    (_line(ts="1"), "record_bad_ts"),
    (_line(ts=True), "record_bad_ts"),
    (_line(ts=-1), "record_bad_ts"),
    (_line(ts=...), "record_bad_ts"),
    (_line(address="aa:bb"), "record_bad_address"),
    (_line(address=5), "record_bad_address"),
    (_line(address_type="static"), "record_bad_address_type"),
    (_line(rssi=-500), "record_bad_rssi"),
    (_line(rssi=1.5), "record_bad_rssi"),
    (_line(channel=40), "record_bad_channel"),
    (_line(manufacturer_data={"65536": "00"}), "record_bad_manufacturer_data"),
    (_line(manufacturer_data={"0x4c": "00"}), "record_bad_manufacturer_data"),
    (_line(manufacturer_data={"76": "0g"}), "record_bad_manufacturer_data"),
    (_line(manufacturer_data=[]), "record_bad_manufacturer_data"),
    (_line(service_data={"fea": "00"}), "record_bad_service_data"),
    (_line(service_data={"feaa": 1}), "record_bad_service_data"),
    (_line(service_uuids="feaa"), "record_bad_service_uuids"),
    (_line(service_uuids=[1]), "record_bad_service_uuids"),
    (_line(local_name=1), "record_bad_local_name"),
    (_line(tx_power=200), "record_bad_tx_power"),
    # Hostile values that used to raise (issue 12): unhashable types, non-ASCII digits, huge ts.
    (_line(address_type=[]), "record_bad_address_type"),
    (_line(address_type={"x": 1}), "record_bad_address_type"),
    (_line(manufacturer_data={"\u00b2": "00"}), "record_bad_manufacturer_data"),
    (_line(manufacturer_data={"\u0667\u0666": "00"}), "record_bad_manufacturer_data"),
    (_line(ts=10**30), "record_bad_ts"),
    (_line(ts=5e9), "record_bad_ts"),
])
def test_rejections(line: str, reason: str) -> None:
    rec = parse_recording_line(line)
    assert isinstance(rec, Rejection) and rec.reason == reason


@pytest.mark.parametrize(("key", "want"), [
    ("FEAA", "0000feaa-0000-1000-8000-00805f9b34fb"),
    ("0000feaa", "0000feaa-0000-1000-8000-00805f9b34fb"),
    ("6E400001B5A3F393E0A9E50E24DCCA9E", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"),
    ("6e400001-b5a3-f393-e0a9-e50e24dcca9e", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"),
    ("6e400001-b5a3-f393-e0a9-e50e24dcca9", None),
    ("zzzz", None),
    ("", None),
])
def test_uuid_keys(key: str, want: str | None) -> None:
    assert normalize_uuid_key(key) == want


@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_never_raises(text: str) -> None:
    parse_recording_line(text)


@given(st.dictionaries(st.sampled_from(list(LINE)), st.none() | st.integers() | st.text()
                       | st.floats() | st.lists(st.text(max_size=4), max_size=3)
                       | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)))
def test_never_raises_on_typed_garbage(d: dict[str, Any]) -> None:
    parse_recording_line(json.dumps(d))


def test_format_round_trip() -> None:
    rec = parse_recording_line(_line())
    assert not isinstance(rec, Rejection)
    again = parse_recording_line(format_recording_line(*rec))
    assert again == rec
    assert json.loads(format_recording_line(*rec))["address"] == "c0:de:00:00:00:01"


@pytest.mark.skipif(not GAP.exists(), reason="../shared captures folder absent")
def test_gap_vectors_same_advert_as_ad_parser() -> None:
    """bluetooth-data-tools' expected fields, written as recording lines, give the same Advert
    as our AD parser on the raw payloads (the format is bleak's view of the same data)."""
    vectors = json.loads(GAP.read_text())["vectors"]
    checked = 0
    for v in vectors:
        exp = v["expected"]
        if not {"local_name", "manufacturer_data", "service_data"} <= set(exp):
            continue
        line = json.dumps({"ts": 1, "address": "00:11:22:33:44:55", **exp})
        rec = parse_recording_line(line)
        assert not isinstance(rec, Rejection), (v["test"], rec)
        adv = rec[4]
        assert dict(adv.manufacturer_data) == {int(k): bytes.fromhex(h)
                                               for k, h in exp["manufacturer_data"].items()}
        assert adv.local_name == exp["local_name"] and adv.tx_power == exp.get("tx_power")
        parsed = parse_ad(b"".join(bytes.fromhex(h) for h in v["ad_payloads_hex"]))
        if isinstance(parsed, Advert):
            assert dict(parsed.service_data) == dict(adv.service_data), v["test"]
            assert set(parsed.service_uuids) == set(adv.service_uuids), v["test"]
            assert dict(parsed.manufacturer_data) == dict(adv.manufacturer_data), v["test"]
            checked += 1
    assert checked >= 10
