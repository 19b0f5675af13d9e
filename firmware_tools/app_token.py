"""Reference encoder for the rotating app token (docs/app_token.md): what the phone advertises.

`python -m firmware_tools.app_token --secret HEX --uuid UUID [--at UNIX_TIME] [--window 300]`
prints the window, major and minor, the raw advertising data (Flags + iBeacon manufacturer data,
hex, as on air) and one JSONL line in the BLE recording format (docs/ble_recording.md), so the
output doubles as a test advert for `presence-gateway replay` / `decode ble`.
The secret is only read from the command line; it is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m firmware_tools.app_token",
                                description="Compute the rotating app token iBeacon advert.")
    p.add_argument("--secret", required=True, help="per-install secret, hex (>= 16 bytes)")
    p.add_argument("--uuid", required=True, help="the retailer's app iBeacon UUID")
    p.add_argument("--at", type=float, default=None, help="unix time (default: now)")
    p.add_argument("--window", type=int, default=APP_TOKEN_WINDOW_S, help="window seconds")
    p.add_argument("--power", type=int, default=-59, help="measured power at 1 m, dBm")
    p.add_argument("--address", default="c0:de:00:00:00:01",
                   help="address for the JSONL line (a random static one by default)")
    p.add_argument("--rssi", type=int, default=-60, help="rssi for the JSONL line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    try:
        secret = bytes.fromhex(args.secret)
        uuid = normalize_uuid(args.uuid)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(secret) < 16 or args.window <= 0 or not -128 <= args.power <= 127:
        print("error: secret must be >= 16 bytes, window > 0, power -128..127", file=sys.stderr)
        return 2
    at = time.time() if args.at is None else args.at
    window = app_token_window(at, args.window)
    major, minor = app_token(secret, window)
    line = {
        "ts": at, "address": args.address.lower(), "address_type": "random", "rssi": args.rssi,
        "manufacturer_data": {str(APPLE): ibeacon_payload(uuid, major, minor, args.power).hex()},
        "service_data": {}, "service_uuids": [], "local_name": None, "tx_power": None,
        "channel": None,
    }
    print(f"window {window}")
    print(f"major {major}")
    print(f"minor {minor}")
    print(f"ad {ibeacon_ad(uuid, major, minor, args.power).hex()}")
    print(f"jsonl {json.dumps(line, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
