"""The `offers.reload` command and SIGHUP reload: validate a whole rules text, then swap it.

Invariants: the engine's rules change only when the new text has no error; the result event
says which (with every rules error on failure), and the old rules keep running otherwise.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from presence_gateway.core.commands import Command, CommandRejected, result_event
from presence_gateway.core.events import CommandOutcome
from presence_gateway.core.offers.engine import OfferEngine
from presence_gateway.core.offers.rules import parse_rules
from presence_gateway.errors import ConfigError, ConfigErrors

OFFERS_RELOAD = "offers.reload"


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    command: Command
    version: str
    rules_text: str


def reload_request(cmd: Command) -> ReloadRequest | CommandRejected:
    """The fields of an accepted `offers.reload` command, or why they are unusable."""
    rules, version = cmd.body.get("rules"), cmd.body.get("version", "")
    if not isinstance(rules, str) or not isinstance(version, str | int):
        return CommandRejected("invalid", "offers.reload needs rules (YAML text) and a version",
                               cmd.id)
    return ReloadRequest(cmd, str(version), rules)


def reload_offers(engine: OfferEngine, text: str, *, source: str, zones: Collection[str] | None,
                  now: float, command_id: str | None = None,
                  version: str = "") -> tuple[bool, CommandOutcome]:
    """Validate a whole rules text and swap it into `engine` only if it has no error.

    Used for SIGHUP (command_id None, the file's text) and for `offers.reload` commands.
    Returns (swapped, the result event); on failure the engine keeps its old rules.
    """
    try:
        rules = parse_rules(text, source, zones=zones)
    except (ConfigError, ConfigErrors) as exc:
        errs = exc.errors if isinstance(exc, ConfigErrors) else [exc]
        return False, result_event(OFFERS_RELOAD, now, command_id=command_id, ok=False,
                                   version=version, errors=tuple(str(e) for e in errs))
    engine.replace_rules(rules)
    return True, result_event(OFFERS_RELOAD, now, command_id=command_id, ok=True,
                              version=version or rules.version, rules=len(rules.rules))
