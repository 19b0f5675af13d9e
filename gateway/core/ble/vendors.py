"""Vendor payloads: Microsoft (CDP, Swift Pair), Google Fast Pair, Exposure Notification,
Samsung, and the generic manufacturer fallback named from the Bluetooth SIG company table.

Invariants:
- Decoders return a `Decoded`, a reason string when the payload claims the format but breaks it,
  or None when it is not that format; they never raise (bounds are checked first).
- Exposed fields are non-personal: CDP device type (not its salt or device hash), Swift Pair
  sub-scenario and product display name (not the BR/EDR address), Fast Pair model id, EN's
  rotating proximity identifier and metadata as the contract asks.
- The company table (gateway/data/company_ids.json, source in gateway/data/SOURCES.md) is read
  once, lazily, from package data; a missing file degrades to `company: None`, never an error.
"""

from __future__ import annotations

import json
from importlib import resources

from presence_gateway.core.ble.types import Decoded, decoded

MICROSOFT = 0x0006
SAMSUNG = 0x0075

# [MS-CDP] 2.2.2.2.1 "Bluetooth Advertising Beacon": device type, low 5 bits of the 2nd byte.
CDP_DEVICE_TYPES = {
    1: "Xbox One",
    6: "Apple iPhone",
    7: "Apple iPad",
    8: "Android device",
    9: "Windows 10 Desktop",
    11: "Windows 10 Phone",
    12: "Linux device",
    13: "Windows IoT",
    14: "Surface Hub",
    15: "Windows laptop",
    16: "Windows tablet",
}

_companies: dict[int, str] | None = None


def company_name(company_id: int) -> str | None:
    global _companies
    if _companies is None:
        try:
            data = resources.files("presence_gateway").joinpath("data/company_ids.json")
            text = data.read_text("utf-8")
            _companies = {int(k): v for k, v in json.loads(text).items()}
        except (OSError, ValueError):  # a broken install loses names, not sightings
            _companies = {}
    return _companies.get(company_id)


_GENERIC: dict[int, Decoded] = {}


def generic(company_id: int, malformed: str | None = None) -> Decoded:
    """The fallback for any manufacturer data (memoised per company when well-formed)."""
    if malformed is not None:
        return decoded(
            "manufacturer",
            {"company_id": company_id, "company": company_name(company_id), "malformed": malformed},
        )
    found = _GENERIC.get(company_id)
    if found is None:
        found = decoded(
            "manufacturer", {"company_id": company_id, "company": company_name(company_id)}
        )
        if len(_GENERIC) < 65536:
            _GENERIC[company_id] = found
    return found


_CDP: dict[int, Decoded] = {}  # the CDP byte -> its Decoded: 256 values at most


def _cdp(payload: bytes) -> Decoded | str:
    """Only the second byte is exposed (device type, version), so its Decoded is built once
    per value and shared, as the generic fallback is: CDP is the commonest vendor advert after
    Apple's (Windows PCs and phones with Phone Link)."""
    if len(payload) < 4:
        return "microsoft_cdp_truncated"
    found = _CDP.get(payload[1])
    if found is None:
        device_type = payload[1] & 0x1F
        found = _CDP[payload[1]] = decoded(
            "microsoft_cdp",
            {
                "device_type": device_type,
                "device": CDP_DEVICE_TYPES.get(device_type),
                "version": payload[1] >> 5,
            },
        )
    return found


# Swift Pair: where the display name starts, per sub-scenario (Microsoft "Swift Pair" docs):
# 0x00 LE only; 0x01 BR/EDR via LE (6-byte BR/EDR address + 3-byte class of device);
# 0x02 LE and BR/EDR at one address (3-byte class of device). All after the reserved RSSI byte.
_SWIFT_NAME_AT = {0x00: 3, 0x01: 12, 0x02: 6}


def _swift_pair(payload: bytes) -> Decoded | str:
    if len(payload) < 3:
        return "swift_pair_truncated"
    sub = payload[1]
    start = _SWIFT_NAME_AT.get(sub)
    name = None
    if start is not None and len(payload) > start:
        name = payload[start:].rstrip(b"\x00").decode("utf-8", "replace") or None
    return decoded("swift_pair", {"sub_scenario": sub, "display_name": name})


def microsoft(payload: bytes) -> Decoded | str | None:
    """Company 0x0006: scenario byte 0x01 = Connected Devices Platform, 0x03 = Swift Pair."""
    if not payload:
        return None
    if payload[0] == 0x01:
        return _cdp(payload)
    if payload[0] == 0x03:
        return _swift_pair(payload)
    return None


def samsung(payload: bytes) -> Decoded | None:
    """Company 0x0075: Samsung's payloads are undocumented; report the leading type bytes."""
    if not payload:
        return None
    return decoded(
        "samsung",
        {
            "company_id": SAMSUNG,
            "company": company_name(SAMSUNG),
            "type": payload[0],
            "subtype": payload[1] if len(payload) > 1 else None,
        },
    )


def exposure_notification(data: bytes) -> Decoded | str:
    """Service data 0xFD6F: 16-byte rolling proximity identifier + 4-byte encrypted metadata."""
    if len(data) < 20:
        return "exposure_notification_truncated"
    return decoded("exposure_notification", {"rpi": data[:16].hex(), "aem": data[16:20].hex()})


def fast_pair(data: bytes) -> Decoded | str:
    """Service data 0xFE2C: 3 bytes = model id (discoverable), else account-key data."""
    if not data:
        return "fast_pair_empty"
    if len(data) == 3:
        return decoded("fast_pair", {"model_id": data.hex(), "discoverable": True})
    return decoded("fast_pair", {"model_id": None, "discoverable": False})
