"""Beacon frames: iBeacon, AltBeacon and Eddystone (UID, URL, TLM plain/encrypted, EID).

Invariants:
- Every decoder takes the payload bytes (manufacturer data without the company id, or service
  data without the UUID) and returns a `Decoded`, or a reason string when the payload claims a
  format but breaks it, or None when it is not that format. It never raises: every read is
  bounds-checked before `struct.unpack_from`.
- Field names are exactly those of the `decode ble` contract (docs/ble.md).
- Numbers follow the specs: iBeacon major/minor big-endian, measured power signed; Eddystone
  TLM temperature is signed 8.8 fixed point (0x8000 = not supported -> None), battery 0 = not
  supported -> None, the seconds counter has 0.1 s resolution (uptime_s = counter / 10).
"""

from __future__ import annotations

import struct

from presence_gateway.core.ble.types import Decoded, decoded, uuid_be

_IBEACON = struct.Struct(">16sHHb")  # proximity uuid, major, minor, measured power at 1 m
_ALTBEACON = struct.Struct(">20sb")  # beacon id, reference rssi
_TLM = struct.Struct(">HhII")  # battery mV, temperature 8.8, adv count, 0.1 s counter

IBEACON_PREFIX = b"\x02\x15"  # Apple TLV type 0x02, length 21
ALTBEACON_CODE = b"\xbe\xac"


# Proximity UUID bytes -> text. A store's beacons share a handful of UUIDs (one per fleet or
# app) and differ in major/minor, so formatting each once saves most of an iBeacon's decode.
# Bounded: past _UUID_TEXTS_MAX distinct UUIDs new ones are formatted every time.
_UUID_TEXTS: dict[bytes, str] = {}
_UUID_TEXTS_MAX = 4096


def ibeacon_body(body: bytes) -> Decoded | str:
    """The 21 bytes after `02 15`: uuid, major, minor, power."""
    if len(body) < 21:
        return "ibeacon_truncated"
    raw, major, minor, power = _IBEACON.unpack_from(body)
    uuid = _UUID_TEXTS.get(raw)
    if uuid is None:
        uuid = uuid_be(raw)
        if len(_UUID_TEXTS) < _UUID_TEXTS_MAX:
            _UUID_TEXTS[raw] = uuid
    return decoded(
        "ibeacon",
        {"uuid": uuid, "major": major, "minor": minor, "power": power},
        (f"ibeacon:{uuid}/{major}/{minor}",),
    )


def altbeacon(payload: bytes) -> Decoded | str | None:
    """Manufacturer payload `BE AC`, 20-byte id, reference RSSI, reserved (any company id).

    The reserved byte is the last field; the AltBeacon library accepts a frame that ends just
    before it and reads it as 0, so do we. Anything shorter is not an AltBeacon.
    """
    if payload[:2] != ALTBEACON_CODE:
        return None
    if len(payload) < 23:
        return "altbeacon_truncated"
    beacon_id, power = _ALTBEACON.unpack_from(payload, 2)
    reserved = payload[23] if len(payload) > 23 else 0
    ident = beacon_id.hex()
    return decoded(
        "altbeacon",
        {"id": ident, "power": power, "reserved": reserved},
        (f"altbeacon:{ident}",),
    )


# Eddystone-URL encoding tables (Eddystone spec, "Eddystone-URL").
URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip
_URL_CHARS: tuple[str | None, ...] = tuple(
    URL_EXPANSIONS[b] if b < 14 else (chr(b) if 0x21 <= b <= 0x7E else None) for b in range(256)
)


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def eddystone_uid(data: bytes) -> Decoded | str:
    if len(data) < 18:
        return "eddystone_uid_truncated"
    ns = data[2:12].hex()
    inst = data[12:18].hex()
    return decoded(
        "eddystone_uid",
        {"namespace": ns, "instance": inst, "tx_power": _signed(data[1])},
        (f"eddystone_uid:{ns}/{inst}",),
    )


def eddystone_url(data: bytes) -> Decoded | str:
    if len(data) < 3:
        return "eddystone_url_truncated"
    if data[2] > 3:
        return "eddystone_url_bad_scheme"
    parts = [URL_SCHEMES[data[2]]]
    for b in data[3:]:
        piece = _URL_CHARS[b]
        if piece is None:
            return "eddystone_url_bad_char"
        parts.append(piece)
    return decoded("eddystone_url", {"url": "".join(parts), "tx_power": _signed(data[1])})


def eddystone_tlm(data: bytes) -> Decoded | str:
    if len(data) < 2:
        return "eddystone_tlm_truncated"
    version = data[1]
    if version == 0x01:  # encrypted TLM: 12-byte ETLM, 16-bit salt, 16-bit MIC
        if len(data) < 18:
            return "eddystone_tlm_truncated"
        return decoded(
            "eddystone_tlm",
            {
                "encrypted": True,
                "etlm": data[2:14].hex(),
                "salt": data[14:16].hex(),
                "mic": data[16:18].hex(),
            },
        )
    if version != 0x00:
        return "eddystone_tlm_bad_version"
    if len(data) < 14:
        return "eddystone_tlm_truncated"
    battery, temp, count, tenths = _TLM.unpack_from(data, 2)
    return decoded(
        "eddystone_tlm",
        {
            "battery_mv": battery or None,
            "temperature_c": None if temp == -0x8000 else temp / 256,
            "adv_count": count,
            "uptime_s": tenths / 10,
        },
    )


def eddystone_eid(data: bytes) -> Decoded | str:
    if len(data) < 10:
        return "eddystone_eid_truncated"
    eid = data[2:10].hex()
    return decoded(
        "eddystone_eid", {"eid": eid, "tx_power": _signed(data[1])}, (f"eddystone_eid:{eid}",)
    )


_EDDYSTONE = {0x00: eddystone_uid, 0x10: eddystone_url, 0x20: eddystone_tlm, 0x30: eddystone_eid}


def eddystone(data: bytes) -> Decoded | str | None:
    """Service data 0xFEAA: the first byte selects the frame; unknown frames are not ours."""
    if not data:
        return "eddystone_empty"
    frame = _EDDYSTONE.get(data[0])
    return frame(data) if frame is not None else None
