"""Edge cases of the AD walk and of Apple's message walk, pinned value by value.

Both walks were flattened for speed (issue 15): one loop with local variables in `_parse`, and
a Continuity walk that slices a message body only when a detail reads it. The vector tests
cover well-formed adverts; these pin what the flattened loops must keep doing on the edges
(truncation at each position, HomeKit's 5-bit length, an iBeacon whose length runs past the
payload, uncommon AD types, scan-response precedence). Expected values are those of the
previous, straightforward implementation.
"""

from __future__ import annotations

from typing import Any

import pytest

from presence_gateway.core.ble.apple import decode_apple
from presence_gateway.core.ble.decode import Advert, decode, memo_clear, parse_ad
from presence_gateway.core.ble.types import Decoded, uuid16

IB = "0215" + "ebefd08370a247c89837e7b5634df525" + "0001" + "0002" + "c5"
IBEACON = (
    "ibeacon",
    {"uuid": "ebefd083-70a2-47c8-9837-e7b5634df525", "major": 1, "minor": 2, "power": -59},
)


def _msgs(*messages: dict[str, Any], device_class: str | None = None) -> tuple[str, Any]:
    return "apple", {"messages": list(messages), "device_class": device_class}


def _ni(code: int, activity: str | None) -> dict[str, Any]:
    return {"type": 16, "name": "nearby_info", "action_code": code, "activity": activity}


def _trunc(t: int, name: str) -> dict[str, Any]:
    return {"type": t, "name": name, "truncated": True}


OVERFLOW = {"type": 1, "name": "overflow"}
WIFI_PASSWORD = {"type": 15, "name": "nearby_action", "action_type": 8, "action": "wifi_password"}
APPLE_CASES: list[tuple[str, Any]] = [
    ("", None),
    ("10", (_msgs(_trunc(16, "nearby_info")),)),  # type byte, no length
    ("1000", (_msgs({"type": 16, "name": "nearby_info"}),)),  # empty body: no action code
    ("1001", (_msgs(_trunc(16, "nearby_info")),)),
    ("100105", (_msgs(_ni(5, "audio_screen_locked")),)),
    ("01" + "aa" * 16 + "10010b", (_msgs(OVERFLOW, _ni(11, "recent_interaction")),)),
    ("01aa", (_msgs(OVERFLOW),)),  # overflow never truncates
    ("0215", (_msgs(_trunc(2, "ibeacon")),)),
    (IB, (IBEACON,)),
    (IB + "100107", (IBEACON, _msgs(_ni(7, "screen_on")))),  # the beacon first, then the rest
    ("10010b" + IB, (IBEACON, _msgs(_ni(11, "recent_interaction")))),
    ("0219" + IB[4:], (IBEACON,)),  # length past the payload, 21 bytes there: still a beacon
    ("0216" + IB[4:] + "00", (_msgs({"type": 2, "name": "ibeacon"}),)),  # 22 bytes: not one
    (IB[:-2], (_msgs(_trunc(2, "ibeacon")),)),
    ("06ed" + "00" * 13, (_msgs({"type": 6, "name": "homekit", "category": 0}),)),  # 0xED & 0x1F
    ("0629" + "00112233445566" + "0500", (_msgs({"type": 6, "name": "homekit", "category": 5}),)),
    (
        "0709" + "0001" + "0e20" + "00" * 5,
        (_msgs({"type": 7, "name": "proximity_pairing", "model_code": 270, "model": None}),),
    ),
    ("080200", (_msgs(_trunc(8, "hey_siri")),)),
    ("080600000000000a", (_msgs({"type": 8, "name": "hey_siri"}, device_class="watch"),)),
    ("0f050008aabbcc", (_msgs(WIFI_PASSWORD),)),
    ("120230aa", (_msgs({"type": 18, "name": "findmy", "status": 48, "device": "airpods"},
                        device_class="airpods"),)),
    ("1200", (_msgs({"type": 18, "name": "findmy"}),)),
    ("0906130b0a000004", (_msgs({"type": 9, "name": "airplay_target"}),)),
    ("ff", (_msgs(_trunc(255, "0xff")),)),
    ("0c0e0011", (_msgs(_trunc(12, "handoff")),)),
]


def _shape(found: tuple[Decoded, ...] | str | None) -> Any:
    if found is None or isinstance(found, str):
        return found
    return tuple((d.kind, dict(d.fields)) for d in found)


@pytest.mark.parametrize(("payload", "expected"), APPLE_CASES)
def test_apple_walk(payload: str, expected: Any) -> None:
    assert _shape(decode_apple(bytes.fromhex(payload))) == expected


EDDYSTONE = uuid16(0xFEAA)
PARSE_CASES: list[tuple[str, str, Advert | str]] = [
    # UUID lists: repeats dropped, order kept, across structures
    ("0201060303aafe0303aafe0503aafe0d18", "",
     Advert(service_uuids=(EDDYSTONE, uuid16(0x180D)))),
    ("110700112233445566778899aabbccddeeff00", "",
     Advert(service_uuids=("ffeeddcc-bbaa-9988-7766-554433221100",))),
    ("0506aabbccdd", "", Advert()),  # a 128-bit list too short for one UUID
    ("0520d2040000aa", "", Advert(service_data={"000004d2-0000-1000-8000-00805f9b34fb": b""})),
    ("0420d20400", "", Advert()),  # 32-bit service data shorter than its UUID
    ("1221" + "00112233445566778899aabbccddeeff" + "ab", "",
     Advert(service_data={"ffeeddcc-bbaa-9988-7766-554433221100": b"\xab"})),
    ("0408414243", "050941424344", Advert(local_name="ABCD")),  # complete beats shortened
    ("050941424344", "0408414243", Advert(local_name="ABCD")),  # ... even when it came first
    ("020a04", "020aff", Advert(tx_power=-1)),  # the scan response overrides
    ("03ff4c00", "", Advert(manufacturer_data={0x004C: b""})),
    ("02ff4c", "", Advert()),  # company id cut short: a 1- or 2-byte tail is ignored
    ("000002010603ff", "", Advert()),
    ("0201060aff4c0010051b1c2a3b4c", "05ff4c00", "ad_overrun"),  # overrun in the scan response
    ("0702aafe0d1801", "", "ad_overrun"),
    # a leading Flags structure is stepped over without a loop turn: the rest must still count
    ("020106", "", Advert()),
    ("02010603ff4c", "", "ad_overrun"),
    ("0201060302", "", Advert()),
    ("020106", "02010604ff4c0001", Advert(manufacturer_data={0x004C: b"\x01"})),
    ("02010600000303aafe", "", Advert(service_uuids=(EDDYSTONE,))),
]


@pytest.mark.parametrize(("adv", "scan", "expected"), PARSE_CASES)
def test_parse_edges(adv: str, scan: str, expected: Advert | str) -> None:
    memo_clear()
    found = parse_ad(bytes.fromhex(adv), bytes.fromhex(scan))
    assert (found.reason if not isinstance(found, Advert) else found) == expected


def test_decode_shapes() -> None:
    """One manufacturer entry (the fast path), several entries, service data with both."""
    memo_clear()
    apple = bytes.fromhex("10051b1c2a3b4c")
    ms_other = bytes.fromhex("0201")  # Microsoft, not CDP / Swift Pair: generic
    one = decode(Advert(manufacturer_data={0x0006: ms_other}))
    assert _shape(one) == (("manufacturer", {"company_id": 6, "company": "Microsoft"}),)
    two = decode(Advert(manufacturer_data={0x004C: apple, 0x0006: ms_other}))
    assert [d.kind for d in two] == ["apple", "manufacturer"]
    tlm = bytes.fromhex("20000b1813000000146700002ac4")
    both = decode(Advert(manufacturer_data={0x004C: apple}, service_data={EDDYSTONE: tlm}))
    assert [d.kind for d in both] == ["eddystone_tlm", "apple"]
    assert decode(Advert(service_data={uuid16(0x180F): b"\x64"})) == (Decoded("advert", {}),)
    malformed = {"company_id": 76, "company": "Apple, Inc.", "malformed": "altbeacon_truncated"}
    assert _shape(decode(Advert(manufacturer_data={0x004C: b"\xbe\xac"}))) == (
        ("manufacturer", malformed),
    )


def test_cdp_per_byte_table() -> None:
    """CDP Decodeds are shared per second byte (vendors._CDP): each must still be that byte's."""
    from presence_gateway.core.ble.vendors import CDP_DEVICE_TYPES, microsoft

    for b in range(256):
        for tail in (b"\x00\x00", b"\xff\xff\xff"):  # the rest of the payload never matters
            found = microsoft(bytes((0x01, b)) + tail)
            assert isinstance(found, Decoded)
            assert dict(found.fields) == {
                "device_type": b & 0x1F,
                "device": CDP_DEVICE_TYPES.get(b & 0x1F),
                "version": b >> 5,
            }
    assert microsoft(b"\x01\x09\x20") == "microsoft_cdp_truncated"


def test_ibeacon_uuid_text_memo() -> None:
    """Beacons sharing a proximity UUID (beacons._UUID_TEXTS) keep their own major/minor."""
    for major, minor in ((1, 2), (7, 9), (1, 2)):
        body = bytes.fromhex(IB[4:36]) + bytes((0, major, 0, minor, 0xC5))
        found = decode_apple(b"\x02\x15" + body)
        assert _shape(found) == (("ibeacon", {**IBEACON[1], "major": major, "minor": minor}),)
        assert isinstance(found, tuple)
        assert found[0].identity_hints == (f"ibeacon:{IBEACON[1]['uuid']}/{major}/{minor}",)


def test_hot_path_constructors_build_frozen_dataclasses() -> None:
    """types.advert / types.decoded build through a same-slots twin class (see types.py): the
    result must be the real frozen dataclass, field by field, immutable and picklable."""
    import dataclasses
    import pickle

    from presence_gateway.core.ble.types import advert, decoded

    a = advert("n", {1: b"x"}, {"u": b"y"}, ("s",), -3)
    d = decoded("ibeacon", {"major": 1}, ("h",))
    for built, ref in ((a, Advert("n", {1: b"x"}, {"u": b"y"}, ("s",), -3)),
                       (d, Decoded("ibeacon", {"major": 1}, ("h",)))):  # fmt: skip
        assert type(built) is type(ref)
        assert dataclasses.astuple(built) == dataclasses.astuple(ref)
        assert pickle.loads(pickle.dumps(built)) == ref
        first = dataclasses.fields(built)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, first, "x")
