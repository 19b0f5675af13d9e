"""`presence-gateway record ble --out F.jsonl`: record live adverts for replay.

Addresses are pseudonymized per run unless --keep-addresses (firmware_tools/record_ble.py).
Exit codes: 0 stopped (time up or Ctrl-C), 1 the file or the radio failed (the message says
what to do, see docs/ble_live.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from presence_gateway.cli.common import Subparsers
from presence_gateway.errors import GatewayError


def register(sub: Subparsers) -> None:
    p = sub.add_parser("record", help="record live adverts for replay",
                       description="Record live BLE adverts as JSONL for replay.")
    p.add_argument("what", choices=["ble"])
    p.add_argument("--out", required=True, help="output file (.jsonl)")
    p.add_argument("--adapter", default="hci0", help="BlueZ adapter (default hci0)")
    p.add_argument("--seconds", type=float, default=None, help="stop after N s (default: Ctrl-C)")
    p.add_argument("--keep-addresses", action="store_true",
                   help="write real addresses (lab captures of your own devices only)")
    p.set_defaults(func=record_command)


def record_command(args: argparse.Namespace) -> int:
    from presence_gateway.drivers.ble_bleak import map_bleak_error
    from presence_gateway.firmware_tools.record_ble import record

    try:
        with open(args.out, "a", encoding="utf-8") as out:
            n = asyncio.run(record(out, adapter=args.adapter, seconds=args.seconds,
                                   keep_addresses=args.keep_addresses))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    except OSError as exc:
        if exc.filename == args.out:
            raise GatewayError(f"cannot write {args.out}: {exc.strerror}") from None
        reason, detail = map_bleak_error(exc)
        raise GatewayError(f"{reason}: {detail} (see docs/ble_live.md)") from None
    except Exception as exc:  # bleak / D-Bus failures, translated for a person
        reason, detail = map_bleak_error(exc)
        raise GatewayError(f"{reason}: {detail} (see docs/ble_live.md)") from None
    print(f"{n} adverts written to {args.out}", file=sys.stderr)
    return 0
