"""`presence-gateway radio list | monitor IFACE | managed IFACE | plan`: the Wi-Fi adapter.

For the installer putting the monitor-mode adapter in shape (the work is done by
firmware_tools/radio.py with `iw`/`ip`; this module is only its command line).
Exit codes: 0 ok, 1 the switch failed (the message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys

from presence_gateway.cli.common import Subparsers
from presence_gateway.errors import ConfigError
from presence_gateway.firmware_tools.radio import list_interfaces, plan, set_mode


def register(sub: Subparsers) -> None:
    p = sub.add_parser("radio", help="Wi-Fi monitor-mode interface helper",
                       description="List Wi-Fi interfaces, switch one to monitor or managed"
                                   " mode, or print a channel-hopping plan.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="interfaces, their mode and monitor capability")
    for name in ("monitor", "managed"):
        actions.add_parser(name, help=f"put IFACE in {name} mode").add_argument("iface")
    pl = actions.add_parser("plan", help="print a channel-hopping plan")
    pl.add_argument("--channels", default="1,6,11", help="comma list or 'all'")
    pl.add_argument("--dwell", type=float, default=0.25, help="seconds per channel")
    p.set_defaults(func=radio_command)


def radio_command(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(f"{'interface':<12} {'phy':<6} {'mode':<20} monitor capable")
        for row in list_interfaces():
            print(f"{row[0]:<12} {row[1]:<6} {row[2]:<20} {row[3]}")
        return 0
    if args.action in ("monitor", "managed"):
        code, message = set_mode(args.iface, args.action)
        print(message, file=sys.stderr if code else sys.stdout)
        return code
    try:
        lines = plan(args.channels, args.dwell)
    except ValueError:
        raise ConfigError("--channels", "", None,
                          f"bad channel list {args.channels!r} (comma list or 'all')") from None
    print("\n".join(lines))
    return 0
