"""Reference encoder for the rotating app token (docs/app_token.md): what the phone advertises.

Pure functions: `encode` gives the window, major and minor, the raw advertising data (Flags +
iBeacon manufacturer data) and one JSONL line in the BLE recording format. Its command line is
`presence-gateway app-token` (cli/app_token.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from presence_gateway.core.identity.resolve import (
    APP_TOKEN_WINDOW_S,
    app_token,
    app_token_window,
    normalize_uuid,
)

APPLE = 0x004C


def ibeacon_payload(uuid: str, major: int, minor: int, power: int) -> bytes:
    """Manufacturer data after the company id: 02 15, uuid, major, minor (BE), power (int8)."""
    return (b"\x02\x15" + bytes.fromhex(normalize_uuid(uuid).replace("-", ""))
            + major.to_bytes(2, "big") + minor.to_bytes(2, "big") + (power & 0xFF).to_bytes(1))


def ibeacon_ad(uuid: str, major: int, minor: int, power: int) -> bytes:
    """Complete advertising data: Flags (LE General Discoverable, no BR/EDR) + iBeacon."""
    mfr = APPLE.to_bytes(2, "little") + ibeacon_payload(uuid, major, minor, power)
    return b"\x02\x01\x06" + bytes((len(mfr) + 1, 0xFF)) + mfr


@dataclass(frozen=True, slots=True)
class AppToken:
    window: int
    major: int
    minor: int
    ad: bytes                       # advertising data as on air
    recording_line: dict[str, Any]  # one line of the JSONL BLE recording format


def encode(secret: bytes, uuid: str, *, at: float, window_s: int = APP_TOKEN_WINDOW_S,
           power: int = -59, address: str = "c0:de:00:00:00:01", rssi: int = -60) -> AppToken:
    """The advert a phone with `secret` sends at `at` (the gateway resolves it back)."""
    window = app_token_window(at, window_s)
    major, minor = app_token(secret, window)
    line = {
        "ts": at, "address": address.lower(), "address_type": "random", "rssi": rssi,
        "manufacturer_data": {str(APPLE): ibeacon_payload(uuid, major, minor, power).hex()},
        "service_data": {}, "service_uuids": [], "local_name": None, "tx_power": None,
        "channel": None,
    }
    return AppToken(window, major, minor, ibeacon_ad(uuid, major, minor, power), line)
