"""What every command shares: the gateway options, the config they yield, and output files.

Invariants: a command reads its config only through `configure` (file or built-in defaults,
then the command line's overrides), so `run`, `replay`, `doctor` and the tools agree on what
a config means; failures leave as GatewayError subclasses for main's one error path.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import IO, TypeAlias

from presence_gateway.core.config import GatewayConfig, load_config, mqtt_from_url
from presence_gateway.errors import ConfigError, GatewayError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_config(p: argparse.ArgumentParser, help: str = "YAML config (default: built-ins)") -> None:
    p.add_argument("-c", "--config", metavar="FILE", help=help)


def add_gateway_options(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--mqtt", metavar="URL", help="mqtt://[user:pass@]host:port or mqtts://...")
    p.add_argument("--db", metavar="PATH", help="SQLite file (outbox, registry) to use")


def configure(args: argparse.Namespace) -> GatewayConfig:
    """Config file (or defaults) with the command line's overrides applied."""
    cfg = load_config(getattr(args, "config", None))
    if getattr(args, "mqtt", None):
        try:
            cfg = dataclasses.replace(cfg, mqtt=mqtt_from_url(args.mqtt, cfg.mqtt))
        except ValueError as exc:
            raise ConfigError("--mqtt", "", None, str(exc)) from None
    if getattr(args, "db", None):
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, path=args.db))
    return cfg


def open_out(stack: contextlib.ExitStack, path: str | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        return stack.enter_context(Path(path).open("wb"))
    except OSError as exc:
        raise GatewayError(f"cannot write {path}: {exc.strerror}") from None
