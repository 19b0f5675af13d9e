"""`presence-gateway`: the command tree and the one error/exit path every command shares.

Exit codes: 0 ok, 1 runtime failure (driver, store, broker), 2 bad config or usage, 130 on
Ctrl-C. Every failure is one readable line on stderr (a config error: `file:line key: message`,
one per problem), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from presence_gateway import __version__
from presence_gateway.cli import (
    app_token,
    calibrate,
    calibrate_count,
    central,
    check_config,
    dashboard,
    decode,
    demo,
    doctor,
    identities,
    init,
    logs,
    monitor,
    offers,
    radio,
    record,
    run,
)
from presence_gateway.errors import ConfigError, ConfigErrors, GatewayError

# In the order `--help` lists them. Each module has register(subparsers) and sets `func`.
COMMANDS: tuple[ModuleType, ...] = (run, check_config, init, demo, doctor, monitor, decode,
                                    record, identities, offers, radio, calibrate,
                                    calibrate_count, app_token,
                                    central, dashboard)


class _Version(argparse.Action):
    """--version, with the build (pure Python or compiled, gateway/build.py): looked up only
    when asked, as it imports the compiled modules."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from presence_gateway.build import describe
        print(f"presence-gateway {__version__} ({describe()})")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="presence-gateway", description="In-store BLE + Wi-Fi presence gateway.",
        epilog="Run `presence-gateway COMMAND --help` for a command's options.")
    p.add_argument("--version", action=_Version, nargs=0,
                   help="show the version and the build (pure Python or compiled), then exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging of the gateway (libraries stay at INFO)")
    p.add_argument("--debug-logger", metavar="NAME", action="append", default=[],
                   help="debug lines of this library's logger too, e.g. aiosqlite (its lines"
                        " show SQL values: secrets and customer ids); repeatable")
    p.add_argument("--log-format", choices=logs.FORMATS, default="auto",
                   help="text, json (a JSON object per line) or journal (syslog priority"
                        " prefixes); auto: journal under systemd, else text")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help exits 0, a usage error 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    logs.configure(args.verbose, args.debug_logger, args.log_format)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, ConfigErrors) as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except GatewayError as exc:
        print(f"presence-gateway {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
