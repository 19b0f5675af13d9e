"""`presence-gateway app-token --secret HEX --uuid UUID [--at T]`: what the app advertises.

Prints the window, major and minor, the raw advertising data (Flags + iBeacon manufacturer
data, hex, as on air) and one JSONL line in the BLE recording format (docs/ble_recording.md),
so the output doubles as a test advert for `replay` and `decode ble`. The reference encoder
itself is firmware_tools/app_token.py. The secret is only read from the command line and
never printed.
"""

from __future__ import annotations

import argparse
import json
import time

from presence_gateway.cli.common import Subparsers
from presence_gateway.core.identity.resolve import APP_TOKEN_WINDOW_S, normalize_uuid
from presence_gateway.errors import ConfigError
from presence_gateway.firmware_tools.app_token import encode


def register(sub: Subparsers) -> None:
    p = sub.add_parser("app-token", help="reference encoder of the app token",
                       description="Compute the rotating app-token iBeacon advert a"
                                   " consenting customer's phone sends (docs/app_token.md).")
    p.add_argument("--secret", required=True, help="per-install secret, hex (>= 16 bytes)")
    p.add_argument("--uuid", required=True, help="the retailer's app iBeacon UUID")
    p.add_argument("--at", type=float, default=None, help="unix time (default: now)")
    p.add_argument("--window", type=int, default=APP_TOKEN_WINDOW_S, help="window seconds")
    p.add_argument("--power", type=int, default=-59, help="measured power at 1 m, dBm")
    p.add_argument("--address", default="c0:de:00:00:00:01",
                   help="address for the JSONL line (a random static one by default)")
    p.add_argument("--rssi", type=int, default=-60, help="rssi for the JSONL line")
    p.set_defaults(func=app_token_command)


def app_token_command(args: argparse.Namespace) -> int:
    try:
        secret = bytes.fromhex(args.secret)
    except ValueError:
        raise ConfigError("--secret", "", None, "not hex") from None
    try:
        uuid = normalize_uuid(args.uuid)
    except ValueError as exc:
        raise ConfigError("--uuid", "", None, str(exc)) from None
    if len(secret) < 16:
        raise ConfigError("--secret", "", None, "must be at least 16 bytes")
    if args.window <= 0:
        raise ConfigError("--window", "", None, "must be > 0")
    if not -128 <= args.power <= 127:
        raise ConfigError("--power", "", None, "must be -128..127 dBm")
    at = time.time() if args.at is None else args.at
    token = encode(secret, uuid, at=at, window_s=args.window, power=args.power,
                   address=args.address, rssi=args.rssi)
    print(f"window {token.window}")
    print(f"major {token.major}")
    print(f"minor {token.minor}")
    print(f"ad {token.ad.hex()}")
    print(f"jsonl {json.dumps(token.recording_line, separators=(',', ':'))}")
    return 0
