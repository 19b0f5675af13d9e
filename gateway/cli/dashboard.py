"""`presence-gateway dashboard --db URL --listen HOST:PORT [-c FILE]`: the web dashboard for
marketers, store managers and IT, read-only over the central database that `central run`
fills (SQLite on a single store's Pi, PostgreSQL for a chain).

Users come from the config's `dashboard:` section (the admin from `dashboard.admin`); without
one nobody could log in, so the command refuses to start. It binds to loopback by default:
put TLS in front (a reverse proxy, docs/dashboard.md) before opening it to a network.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from presence_gateway.cli.common import Subparsers, add_config
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.errors import ConfigError

if TYPE_CHECKING:  # the dashboard's modules load only when the command runs
    from presence_gateway.central.dashboard.auth import Auth


def register(sub: Subparsers) -> None:
    p = sub.add_parser("dashboard", help="serve the web dashboard over the central database",
                       description="Serve the dashboard (stores, a store's day, campaigns, "
                                   "gateway health) over the central database.")
    p.add_argument("--db", required=True, metavar="URL",
                   help="sqlite:///PATH or postgresql://... (what `central run` writes)")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve (default 127.0.0.1:8080, loopback only)")
    add_config(p, "config with the dashboard: section (users) and store.timezone")
    p.set_defaults(func=dashboard)


def listen_address(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("--listen", "", None, f'expected HOST:PORT, got "{spec}"')
    return host.strip("[]"), int(port)


def build_auth(cfg: GatewayConfig) -> Auth:
    from presence_gateway.central.dashboard.auth import Auth, User, hash_password
    users = [User(u.name, u.role, u.password_hash or hash_password(u.password or ""))
             for u in cfg.dashboard.users]
    if not users:
        raise ConfigError(cfg.source, "dashboard.admin", None,
                          "no user can log in: set dashboard.admin: {user: NAME, password:"
                          " env:NAME}")
    return Auth(users, key=cfg.dashboard.session_key,
                secure_cookies=cfg.dashboard.secure_cookies)


def dashboard(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    host, port = listen_address(args.listen)
    auth = build_auth(cfg)
    return asyncio.run(serve(cfg, auth, args.db, host, port))


async def serve(cfg: GatewayConfig, auth: Auth, url: str, host: str, port: int) -> int:
    # aiohttp with the rest (a tenth of a second, TLS context included): not on every
    # command's start-up, only this one's
    from presence_gateway.adapters.http import listening
    from presence_gateway.central.dashboard import queries
    from presence_gateway.central.dashboard.app import Dashboard
    from presence_gateway.central.db import open_db
    from presence_gateway.runtime.assembly import load_rules

    rules = ([r.id for r in load_rules(cfg.offers.rules_path, cfg).rules]
             if cfg.offers.rules_path else [])
    db = await open_db(url)
    try:
        await queries.prepare(db)
        app = Dashboard(db, auth, timezones=dict(cfg.dashboard.timezones),
                        default_tz=cfg.timezone, rules=rules,
                        simulations=cfg.dashboard.simulations).app()
        async with listening(app, host, port) as base:
            print(f"dashboard on {base}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
    finally:
        await db.close()
    return 0
