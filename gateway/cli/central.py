"""`presence-gateway central`: the reference central consumer of a fleet (docs/fleet.md).

    central run --broker URL [--broker URL ...] --db URL [-c FILE] [--partitions N] ...
        consume every store's events from a (clustered) broker into a database until
        SIGTERM/SIGINT; several instances with the same --db share the partitions
    central report --db URL [--json]
        what the database holds: events, duplicates, gaps, and each gateway's position/status

`--db sqlite:///PATH` (the embedded default, `sqlite:////abs/path` for an absolute path) or
`postgresql://user@host:port/db`. A `-c FILE` is YAML with the same names under `central:`
(brokers, db, prefix, partitions, group, lease, gap_timeout, username, password,
command_key: secrets as env:NAME or file:PATH); flags win.
Exit codes: 0 ok, 1 broker/database failure, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.central.consumer import Coordinator, Options
from presence_gateway.central.db import open_db
from presence_gateway.cli.common import Subparsers
from presence_gateway.core.config import Endpoint, mqtt_from_url
from presence_gateway.core.yamlread import Reader, load_yaml, read_secret
from presence_gateway.errors import ConfigError

DEFAULT_DB = "sqlite:///var/central.db"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("central", help="the reference central consumer of a fleet",
                       description="Consume a fleet's events from a (clustered) broker into"
                                   " SQLite or PostgreSQL, in order per store, once per event.")
    csub = p.add_subparsers(dest="central_command", required=True, metavar="SUBCOMMAND")
    r = csub.add_parser("run", help="consume until SIGTERM",
                        description="Consume until SIGTERM/SIGINT; instances sharing --db share"
                                    " the partitions.")
    r.add_argument("-c", "--config", metavar="FILE", help="YAML with a `central:` section")
    r.add_argument("--broker", action="append", metavar="URL",
                   help="mqtt://host:port of a broker node (repeat for a cluster)")
    r.add_argument("--db", metavar="URL", help=f"database URL (default {DEFAULT_DB})")
    r.add_argument("--prefix", help="topic prefix of the fleet (default presence)")
    r.add_argument("--partitions", type=int, help="partitions of the fleet (default 16)")
    r.add_argument("--group", help="consumer group name (default central)")
    r.add_argument("--instance", help="this instance's name (default host-pid)")
    r.add_argument("--lease", type=float, metavar="S", help="partition lease, s (default 10)")
    r.add_argument("--gap-timeout", type=float, metavar="S",
                   help="wait this long for a missing sequence before skipping it (default 10)")
    r.add_argument("--username", help="broker user name")
    r.add_argument("--password-from", metavar="env:NAME|file:PATH", help="broker password")
    r.add_argument("--command-key-from", metavar="env:NAME|file:PATH",
                   help="the fleet's offers.command_key: ask for holes with a sealed"
                        " events.resend (not on NATS 2.9: the topic has a '.')")
    r.set_defaults(func=run_command)
    rep = csub.add_parser("report", help="what the central database holds",
                          description="Events, duplicates, gaps and each gateway's status.")
    rep.add_argument("--db", metavar="URL", default=DEFAULT_DB, help="database URL")
    rep.add_argument("--json", action="store_true", help="one JSON object on stdout")
    rep.set_defaults(func=report_command)


def options(args: argparse.Namespace) -> tuple[Options, str]:
    conf = _file(args.config) if args.config else {}
    urls = args.broker or conf.get("brokers") or []
    if not urls:
        raise ConfigError("--broker", "", None, "give at least one --broker mqtt://host:port")
    brokers: list[Endpoint] = []
    username = args.username or conf.get("username")
    for url in urls:
        try:
            s = mqtt_from_url(str(url))
        except ValueError as exc:
            raise ConfigError("--broker", "", None, str(exc)) from None
        brokers.append(Endpoint(s.host, s.port, s.tls))
        username = username or s.username
    password = conf.get("password")
    if args.password_from:
        r = Reader("--password-from", None, {})
        password = read_secret(r, "--password-from", args.password_from, dict(os.environ))
        r.check()

    key = conf.get("command_key")
    if args.command_key_from:
        r = Reader("--command-key-from", None, {})
        key = read_secret(r, "--command-key-from", args.command_key_from, dict(os.environ))
        r.check()

    def pick(name: str, default: Any) -> Any:
        v = getattr(args, name)
        return v if v is not None else conf.get(name, default)

    opts = Options(
        brokers=tuple(brokers), prefix=str(pick("prefix", "presence")),
        partitions=int(pick("partitions", 16)), group=str(pick("group", "central")),
        instance=str(pick("instance", f"{socket.gethostname()}-{os.getpid()}")),
        lease_s=float(pick("lease", 10.0)), gap_timeout_s=float(pick("gap_timeout", 10.0)),
        username=username, password=password, command_key=(key or "").encode())
    return opts, str(args.db or conf.get("db") or DEFAULT_DB)


def _file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", None, f"cannot read file: {exc.strerror}") from None
    data, lines = load_yaml(text, path)
    r = Reader(Path(path).name, data, lines)
    r.known_keys("", {"central"})
    keys = {"brokers", "db", "prefix", "partitions", "group", "lease", "gap_timeout",
            "username", "password", "instance", "command_key"}
    r.known_keys("central", keys)
    out: dict[str, Any] = {}
    if r.has("central.brokers"):
        out["brokers"] = [str(u) for u in r.list_("central.brokers")]
    for k in ("db", "prefix", "group", "username", "instance"):
        v = r.opt_str(f"central.{k}")
        if v is not None:
            out[k] = v
    if r.has("central.partitions"):
        out["partitions"] = r.int_("central.partitions", 16, 1, 1000)
    for k in ("lease", "gap_timeout"):
        if r.has(f"central.{k}"):
            out[k] = r.duration(f"central.{k}", 10.0)
    for secret in ("password", "command_key"):
        spec = r.opt_str(f"central.{secret}")
        if spec is not None:
            out[secret] = read_secret(r, f"central.{secret}", spec, dict(os.environ))
    r.check()
    return out


def run_command(args: argparse.Namespace) -> int:
    opts, db_url = options(args)
    _make_parent(db_url)
    asyncio.run(_run(opts, db_url))
    return 0


async def _run(opts: Options, db_url: str) -> None:
    db = await open_db(db_url)
    try:
        task = asyncio.create_task(Coordinator(opts, db).run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await db.close()


def report_command(args: argparse.Namespace) -> int:
    report = asyncio.run(_report(args.db))
    if args.json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return 0
    print(f"events: {report['events']}  duplicates: {report['duplicates']}  gaps:"
          f" {report['gaps']}")
    for key, g in report["gateways"].items():
        print(f"  {key}: last_sequence {g['last_sequence']}  status {g['status']}  outbox"
              f" {g['outbox_depth']}  gaps {g['gaps']}"
              + (f"  wifi placement: {g['wifi_placement']}" if g["wifi_placement"] else ""))
    return 0


async def _report(url: str) -> dict[str, Any]:
    db = await open_db(url)
    try:
        return await db.report()
    finally:
        await db.close()


def _make_parent(url: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
