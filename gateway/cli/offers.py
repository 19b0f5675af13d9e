"""`presence-gateway offers check|simulate`: validate offer rules, or try them on recordings.

    presence-gateway offers check RULES.yaml [-c CONFIG]
    presence-gateway offers simulate RULES.yaml CAPTURE... [--db PATH] [--identities FILE]
                                     [-c CONFIG]

`simulate` replays the captures through the real pipeline (drivers' replay readers -> privacy
Boundary with the identity resolver -> PresenceEngine -> identity Linker -> OfferEngine ->
envelope), in capture time, with a fresh caps ledger (the live one is never read or written),
and writes each `presence.offer.triggered` CloudEvent as one JSON line on stdout; a summary
(fired per offer, suppressed per reason) goes to stderr.

Exit codes: 0 ok, 1 runtime failure (capture unreadable, ...), 2 rules/config/usage errors
(every rules error is printed as `file:line key (rule id): message`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from presence_gateway.adapters.identity_store import Registry, RegistryState
from presence_gateway.cli.identities import identity_settings
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.events import EventType
from presence_gateway.core.identity.config import IdentitySettings
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import IdentityIndex
from presence_gateway.core.identity.link import Linker
from presence_gateway.core.model import OutboundMessage, Rejection, Sighting
from presence_gateway.core.offers.engine import OfferEngine
from presence_gateway.core.offers.rules import RuleSet
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.errors import ConfigError, ConfigErrors, GatewayError
from presence_gateway.runtime.assembly import assemble, load_rules, pseudonymizer_for

_OFFER_TOPIC_END = "/" + EventType.OFFER_TRIGGERED.value


@dataclasses.dataclass(slots=True)
class Simulation:
    """The pipeline of one gateway, assembled the way the service does, for replay."""

    cfg: GatewayConfig
    boundary: Boundary
    pipeline: Pipeline
    offers: OfferEngine
    linker: Linker
    rejects: int = 0

    def feed(self, sightings: Iterable[Sighting]) -> list[OutboundMessage]:
        admit = self.boundary.admit
        obs = [o for o in (admit(s) for s in sightings) if o is not None]
        return self.pipeline.feed_many(obs, capture_clock=True)


def build(cfg: GatewayConfig, rules: RuleSet, registry: RegistryState | None = None,
          pseudonymizer: Pseudonymizer | None = None,
          identity: IdentitySettings | None = None) -> Simulation:
    """The service's own core (gateway.assembly) over a registry loaded for the replay."""
    if identity is not None:
        cfg = dataclasses.replace(cfg, identity=identity)
    pseudo = pseudonymizer or pseudonymizer_for(cfg)
    ident = cfg.identity
    reg = registry or RegistryState([], frozenset(), [], 0)
    index = IdentityIndex(pseudo.stable_hash, reg.entries, app_uuid=ident.app_uuid,
                          app_window_s=ident.app_window_s, app_tolerance=ident.app_tolerance,
                          eid_tolerance=ident.eid_tolerance)
    core = assemble(cfg, pseudonymizer=pseudo, index=index, linker=Linker(index.get, reg.visits),
                    opt_out=reg.opt_out, rules=rules)
    assert core.offers is not None or not rules.rules
    offers = core.offers or OfferEngine(rules, timezone=cfg.timezone, store_id=cfg.store_id)
    return Simulation(cfg, core.boundary, core.pipeline, offers, core.linker)


class _Sink:
    """Driver sink that feeds the simulation directly (no queue: a replay never drops)."""

    def __init__(self, sim: Simulation, out: list[OutboundMessage]) -> None:
        self.sim, self.out = sim, out

    def offer(self, sighting: Sighting) -> None:
        self.out.extend(self.sim.feed((sighting,)))

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        self.out.extend(self.sim.feed(sightings))

    def reject(self, rejection: Rejection) -> None:
        self.sim.rejects += 1


async def replay(sim: Simulation, captures: Sequence[str]) -> list[OutboundMessage]:
    """Every message the pipeline produced for the captures, in capture-time order (several
    recordings are merged as `replay` merges them), plus the final flush."""
    from presence_gateway.drivers.registry import create, replay_settings
    from presence_gateway.runtime.replay_merge import MergedReplay
    out: list[OutboundMessage] = []
    await MergedReplay([create(d) for d in replay_settings(captures)]).run(_Sink(sim, out))
    out.extend(sim.pipeline.finish())
    return out


def offer_messages(messages: Iterable[OutboundMessage]) -> list[OutboundMessage]:
    return [m for m in messages if m.topic.endswith(_OFFER_TOPIC_END)]


# -- command line -------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="presence-gateway offers",
                                description="Check or simulate in-store offer rules.")
    sub = p.add_subparsers(dest="action", required=True)
    chk = sub.add_parser("check", help="validate a rules file (exit 2 with every error)")
    chk.add_argument("rules", metavar="RULES.yaml")
    chk.add_argument("-c", "--config", metavar="FILE",
                     help="gateway config: zone names are checked only when it is given")
    sim = sub.add_parser("simulate", help="replay captures and print the offers that fire")
    sim.add_argument("rules", metavar="RULES.yaml")
    sim.add_argument("captures", nargs="+", metavar="CAPTURE")
    sim.add_argument("-c", "--config", metavar="FILE", help="gateway config (zones, time zone)")
    sim.add_argument("--db", metavar="PATH", help="SQLite file holding the identity registry")
    sim.add_argument("--identities", metavar="FILE",
                     help="registry entries from a CSV/JSON import file instead of --db")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:   # argparse: usage errors are exit 2, --help is 0
        return int(exc.code or 0)
    try:
        cfg = load_config(args.config)
        check_zones = args.action == "simulate" or args.config is not None
        rules = load_rules(args.rules, cfg if check_zones else None)
        if args.action == "check":
            n = sum(1 for r in rules.rules if r.enabled)
            note = "" if check_zones else " (zone names not checked: give -c CONFIG)"
            print(f"{args.rules}: ok, {len(rules.rules)} rule(s), {n} enabled, version "
                  f"{rules.version}{note}", file=sys.stderr)
            return 0
        return simulate(cfg, rules, args.captures, db=args.db, identities=args.identities,
                        out=sys.stdout, err=sys.stderr)
    except (ConfigError, ConfigErrors) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"presence-gateway offers: {exc}", file=sys.stderr)
        return exc.exit_code


def load_registry(cfg: GatewayConfig, pseudo: Pseudonymizer, *, db: str | None,
                  identities: str | None) -> RegistryState:
    """Registry entries (and for --db the opt-out list and visit history) for the replay."""
    if identities is not None:
        try:
            text = Path(identities).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(identities, "", None, f"cannot read file: {exc}") from None
        result = parse_import(text, Path(identities).name, pseudo.stable_hash)
        if result.errors:
            raise ConfigErrors(list(result.errors)) if len(result.errors) > 1 \
                else result.errors[0]
        return RegistryState(list(result.entries), frozenset(), [], 0)
    if db is not None:
        if not Path(db).is_file():
            raise GatewayError(f"no database at {db}")
        return asyncio.run(_registry_from_db(db, pseudo))
    return RegistryState([], frozenset(), [], 0)


async def _registry_from_db(path: str, pseudo: Pseudonymizer) -> RegistryState:
    async with await Registry.open(path) as reg:
        return await reg.load(pseudo.stable_hash)


def simulate(cfg: GatewayConfig, rules: RuleSet, captures: Sequence[str], *, db: str | None,
             identities: str | None, out: IO[str], err: IO[str]) -> int:
    p = cfg.privacy
    pseudo = Pseudonymizer(p.secret, p.rotation_s, p.rotation_offset_s)
    if p.secret_source == "random" and db is not None:
        err.write("warning: privacy.secret is random (no -c CONFIG with a stable secret): the"
                  " registry's hashed beacon ids and MACs cannot match\n")
    registry = load_registry(cfg, pseudo, db=db, identities=identities)
    if not registry.entries:
        err.write("warning: no registered customers (give --db PATH or --identities FILE):"
                  " nothing can fire\n")
    sim = build(cfg, rules, registry, pseudo, identity_settings(cfg))
    messages = asyncio.run(replay(sim, captures))
    for m in offer_messages(messages):
        out.write(m.payload.decode() + "\n")
    out.flush()
    err.write(summary(sim, rules, len(registry.entries)))
    return 0


def summary(sim: Simulation, rules: RuleSet, registered: int) -> str:
    by_type = sim.pipeline.events_by_type
    lines = [f"rules {rules.source} (version {rules.version}): {len(rules.rules)} rule(s)",
             f"observations {sim.pipeline.observations}, rejected frames {sim.rejects}, "
             f"registered entries {registered}",
             f"visits {by_type.get('presence.visit.started', 0)}, linked to a customer "
             f"{by_type.get('presence.identity.linked', 0)}",
             f"offers fired: {sum(sim.offers.fired.values())}"]
    for rule in rules.rules:
        state = "" if rule.enabled else " (disabled)"
        lines.append(f"  {rule.id}{state}: fired {sim.offers.fired.get(rule.id, 0)}")
        for (rid, reason), n in sorted(sim.offers.suppressed.items()):
            if rid == rule.id:
                lines.append(f"      suppressed {n} x {reason}")
    return "\n".join(lines) + "\n"
