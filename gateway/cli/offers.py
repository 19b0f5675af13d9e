"""`presence-gateway offers check|simulate`: validate offer rules, or try them on recordings.

    presence-gateway offers check RULES.yaml [-c CONFIG]
    presence-gateway offers simulate RULES.yaml CAPTURE... [--db PATH] [--identities FILE]
                                     [-c CONFIG] [--report FILE.json]

`simulate` is the gateway itself replaying the captures (runtime/simulate.py: the same
builder as `run` and `replay`, throttle, pseudonymizer, identity and opt-out included) on a
scratch copy of the database with an empty caps ledger; the live database is never written.
Each `presence.offer.triggered` CloudEvent is one JSON line on stdout; a summary (fired per
offer, suppressed per reason) goes to stderr. `--report` also writes that summary as JSON
(per rule: fired, and why it did not fire, by condition or cap) for the dashboard's campaign
view (`dashboard.simulations`).

Exit codes: 0 ok, 1 runtime failure (capture unreadable, ...), 2 rules/config/usage errors
(every rules error is printed as `file:line key (rule id): message`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from presence_gateway.cli.common import Subparsers
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import Entry
from presence_gateway.core.offers.rules import RuleSet
from presence_gateway.errors import ConfigError, ConfigErrors, GatewayError
from presence_gateway.runtime.assembly import load_rules
from presence_gateway.runtime.core import pseudonymizer_for
from presence_gateway.runtime.simulate import SimulationResult, simulate


def register(sub: Subparsers) -> None:
    p = sub.add_parser("offers", help="check or simulate offer rules",
                       description="Check or simulate in-store offer rules.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    chk = actions.add_parser("check", help="validate a rules file (exit 2 with every error)")
    chk.add_argument("rules", metavar="RULES.yaml")
    chk.add_argument("-c", "--config", metavar="FILE",
                     help="gateway config: zone names are checked only when it is given")
    sim = actions.add_parser("simulate", help="replay captures and print the offers that fire")
    sim.add_argument("rules", metavar="RULES.yaml")
    sim.add_argument("captures", nargs="+", metavar="CAPTURE")
    sim.add_argument("-c", "--config", metavar="FILE", help="gateway config (zones, time zone)")
    sim.add_argument("--db", metavar="PATH", help="SQLite file holding the identity registry")
    sim.add_argument("--report", metavar="FILE.json",
                     help="also write the per-rule summary (fired, why not) as JSON")
    sim.add_argument("--identities", metavar="FILE",
                     help="registry entries from a CSV/JSON import file instead of --db")
    p.set_defaults(func=offers_command)


def offers_command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    check_zones = args.action == "simulate" or args.config is not None
    rules = load_rules(args.rules, cfg if check_zones else None)
    if args.action == "check":
        n = sum(1 for r in rules.rules if r.enabled)
        note = "" if check_zones else " (zone names not checked: give -c CONFIG)"
        print(f"{args.rules}: ok, {len(rules.rules)} rule(s), {n} enabled, version "
              f"{rules.version}{note}", file=sys.stderr)
        return 0
    cfg = dataclasses.replace(cfg, offers=dataclasses.replace(cfg.offers, rules_path=args.rules))
    return simulate_command(cfg, rules, args.captures, db=args.db, identities=args.identities,
                            out=sys.stdout, err=sys.stderr, report=args.report)


def read_entries(cfg: GatewayConfig, path: str) -> list[Entry]:
    """Registry entries from an import file (validated whole, as `identities import` does)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", None, f"cannot read file: {exc}") from None
    result = parse_import(text, Path(path).name, pseudonymizer_for(cfg).stable_hash)
    if result.errors:
        raise ConfigErrors(list(result.errors)) if len(result.errors) > 1 else result.errors[0]
    return list(result.entries)


def simulate_command(cfg: GatewayConfig, rules: RuleSet, captures: list[str], *,
                     db: str | None, identities: str | None, out: IO[str], err: IO[str],
                     report: str | None = None) -> int:
    if cfg.privacy.secret_source == "random" and (db is not None or identities is not None):
        err.write("warning: privacy.secret is random (no -c CONFIG with a stable secret): the"
                  " registry's hashed beacon ids and MACs cannot match\n")
    entries = read_entries(cfg, identities) if identities is not None else None
    result = asyncio.run(simulate(cfg, captures, db=db, entries=entries))
    if not result.registered:
        err.write("warning: no registered customers (give --db PATH or --identities FILE):"
                  " nothing can fire\n")
    for m in result.offers:
        out.write(m.payload.decode() + "\n")
    out.flush()
    err.write(summary(result, rules))
    if report is not None:
        body = report_json(result, rules, cfg, captures)
        try:
            Path(report).write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise GatewayError(f"cannot write {report}: {exc.strerror}") from None
    return 0


def report_json(result: SimulationResult, rules: RuleSet, cfg: GatewayConfig,
                captures: list[str]) -> dict[str, Any]:
    """What a marketer's campaign view shows of one simulated day: per rule, how often it
    fired and which condition or cap stopped it the other times."""
    s = result.summary
    first = min((m.created for m in result.messages), default=None)
    day = (dt.datetime.fromtimestamp(first, ZoneInfo(cfg.timezone)).date().isoformat()
           if first is not None else None)
    return {
        "store": cfg.store_id, "day": day, "timezone": cfg.timezone,
        "rules_version": rules.version, "captures": [Path(c).name for c in captures],
        "visits": s.events_by_type.get("presence.visit.started", 0),
        "visits_linked": s.events_by_type.get("presence.identity.linked", 0),
        "registered": result.registered,
        "rules": [{"id": r.id, "description": r.description, "enabled": r.enabled,
                   "fired": result.fired.get(r.id, 0),
                   "not_fired_because": {reason: n for (rid, reason), n
                                         in sorted(result.suppressed.items()) if rid == r.id}}
                  for r in rules.rules],
    }


def summary(result: SimulationResult, rules: RuleSet) -> str:
    s = result.summary
    by_type = s.events_by_type
    lines = [f"rules {rules.source} (version {rules.version}): {len(rules.rules)} rule(s)",
             f"observations {s.observations}, rejected frames {sum(s.rejects.values())}, "
             f"registered entries {result.registered}",
             f"visits {by_type.get('presence.visit.started', 0)}, linked to a customer "
             f"{by_type.get('presence.identity.linked', 0)}",
             f"offers fired: {sum(result.fired.values())}"]
    for rule in rules.rules:
        state = "" if rule.enabled else " (disabled)"
        lines.append(f"  {rule.id}{state}: fired {result.fired.get(rule.id, 0)}")
        for (rid, reason), n in sorted(result.suppressed.items()):
            if rid == rule.id:
                lines.append(f"      suppressed {n} x {reason}")
    return "\n".join(lines) + "\n"
