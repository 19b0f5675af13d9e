"""`presence-gateway check-config FILE`: validate a config (and the offer rules it names).

Exit 0 with a one-line summary, or 2 with every problem as `file:line key.path: message`.
"""

from __future__ import annotations

import argparse

from presence_gateway.cli.common import Subparsers
from presence_gateway.core.config import load_config
from presence_gateway.runtime.assembly import load_rules


def register(sub: Subparsers) -> None:
    p = sub.add_parser("check-config", help="validate a config file and exit",
                       description="Validate a gateway config and the offer rules it names.")
    p.add_argument("file")
    p.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    rules_note = ""
    if cfg.offers.rules_path is not None:  # the rules are part of what starts
        n = len(load_rules(cfg.offers.rules_path, cfg).rules)
        rules_note = f", {n} offer rule(s)"
    print(f"{args.file}: ok (store {cfg.store_id}, gateway {cfg.gateway_id}, "
          f"{len(cfg.drivers)} driver(s), broker {cfg.mqtt.host}:{cfg.mqtt.port}{rules_note})")
    return 0
