"""What every command shares: the gateway options, the config they yield, and output files.

Invariants: a command reads its config only through `configure` (file or built-in defaults,
then the command line's overrides), so `run`, `replay`, `doctor` and the tools agree on what
a config means; failures leave as GatewayError subclasses for main's one error path.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import IO, TypeAlias

from presence_gateway.core.config import GatewayConfig, MqttSettings, load_config, mqtt_from_url
from presence_gateway.core.yamlread import Reader, read_secret
from presence_gateway.errors import ConfigError, GatewayError

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_config(p: argparse.ArgumentParser, help: str = "YAML config (default: built-ins)") -> None:
    p.add_argument("-c", "--config", metavar="FILE", help=help)


def add_gateway_options(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_broker_options(p)
    p.add_argument("--db", metavar="PATH", help="SQLite file (outbox, registry) to use")


def add_broker_options(p: argparse.ArgumentParser, url_help: str = "") -> None:
    """--mqtt URL and where its password comes from: never the command line itself, which
    any user of the machine reads with `ps` (and the shell keeps in its history)."""
    p.add_argument("--mqtt", metavar="URL",
                   help=url_help or "mqtt://[user@]host:port or mqtts://... (no password:"
                                    " see --mqtt-password-from)")
    p.add_argument("--mqtt-password-from", metavar="SOURCE",
                   help="the broker password from env:NAME or file:PATH")


def broker_overrides(mqtt: MqttSettings, url: str | None,
                     password_from: str | None) -> MqttSettings:
    """`mqtt` with --mqtt and --mqtt-password-from applied; ConfigError names the flag."""
    if url:
        try:
            mqtt = mqtt_from_url(url, mqtt)
        except ValueError as exc:
            raise ConfigError("--mqtt", "", None, str(exc)) from None
    if password_from:
        # The resolver of the config's secret keys, so both accept exactly the same sources.
        r = Reader("--mqtt-password-from", None, {})
        password = read_secret(r, "", password_from, os.environ)
        r.check()
        if not mqtt.username:
            raise ConfigError("--mqtt-password-from", "", None, "a password needs a user name:"
                              " mqtt://USER@host:port, or mqtt.username in the config")
        mqtt = dataclasses.replace(mqtt, password=password)
    return mqtt


def configure(args: argparse.Namespace) -> GatewayConfig:
    """Config file (or defaults) with the command line's overrides applied."""
    cfg = load_config(getattr(args, "config", None))
    url, password_from = getattr(args, "mqtt", None), getattr(args, "mqtt_password_from", None)
    if url or password_from:
        cfg = dataclasses.replace(cfg, mqtt=broker_overrides(cfg.mqtt, url, password_from))
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
