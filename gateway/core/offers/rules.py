"""Offer rules: YAML -> a validated, frozen `RuleSet`, or every error at once.

The file shape (extended, never broken):

    version: "2025-06-spring"        # optional label, echoed in reload results
    limits: {max_per_visit: 2, per_customer: {day: 3}, global_per_hour: 500}  # all offers
    offers:
      - id: shoes-gold
        description: Gold members who browse shoes for 3 minutes
        enabled: true                # optional
        when: {zone, dwell_at_least, segment, visits_at_least, visits_within, days, hours,
               start_date, end_date}
        limits: {cooldown, per_customer: {day, week}, global_per_hour, max_per_visit}
        payload: {campaign: SHOES10, channel: app_push}

Invariants:
- `parse_rules` returns a complete `RuleSet` or raises ConfigError/ConfigErrors naming every
  problem: file, line, key path and, for anything inside a rule, the rule id in parentheses
  (`offers.yaml:12 offers[0].limits.cooldown (shoes-gold): expected a duration ...`). A set with
  one error is rejected whole, so the caller keeps running the old rules.
- Unknown keys, unknown zones, bad durations, empty or malformed time windows, a start date
  after the end date and duplicate ids are errors. `hours` whose end is before its start is an
  overnight window (22:00-02:00), which is allowed; start == end is empty and rejected.
- Consent scope `offers` is always required; it is not a rule option (nothing can turn it off).
- Pure: parses text the caller read; no clock (dates are compared by the engine).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from presence_gateway.core.yamlread import Reader, load_yaml
from presence_gateway.errors import ConfigError, ConfigErrors

REQUIRED_CONSENT = "offers"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_SETS = {"weekdays": frozenset(range(5)), "weekends": frozenset({5, 6}),
             "all": frozenset(range(7))}
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_TOP_KEYS = frozenset({"version", "limits", "offers"})
_RULE_KEYS = frozenset({"id", "description", "enabled", "when", "limits", "payload"})
_WHEN_KEYS = frozenset({"zone", "dwell_at_least", "segment", "visits_at_least", "visits_within",
                        "days", "hours", "start_date", "end_date"})
_LIMIT_KEYS = frozenset({"cooldown", "per_customer", "global_per_hour", "max_per_visit"})
_STORE_LIMIT_KEYS = frozenset({"per_customer", "global_per_hour", "max_per_visit"})
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Window:
    """Store-local minutes since midnight; `end < start` spans midnight (overnight)."""

    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end < self.start

    def __str__(self) -> str:
        s, e = divmod(self.start, 60), divmod(self.end, 60)
        return f"{s[0]:02d}:{s[1]:02d}-{e[0]:02d}:{e[1]:02d}"


@dataclass(frozen=True, slots=True)
class Conditions:
    zone: str | None = None                      # None: any zone
    dwell_s: float = 0.0                         # 0: fire on entering the zone
    segment: tuple[tuple[str, frozenset[str]], ...] = ()
    visits_at_least: int = 1                     # this visit included
    visits_within_days: float | None = None      # None: all visits the registry remembers
    days: frozenset[int] = frozenset(range(7))   # 0 = Monday
    hours: tuple[Window, ...] = ()               # empty: all day
    start_date: dt.date | None = None            # inclusive, store-local
    end_date: dt.date | None = None              # inclusive, store-local


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps; None means no cap. Day/week/hour are rolling windows (24 h, 7 d, 1 h)."""

    cooldown_s: float = 0.0
    per_day: int | None = None
    per_week: int | None = None
    per_hour: int | None = None
    max_per_visit: int | None = None


@dataclass(frozen=True, slots=True)
class OfferRule:
    id: str
    description: str
    when: Conditions
    limits: Limits
    payload: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[OfferRule, ...]
    limits: Limits = Limits()      # across all offers (store-wide / any offer per customer)
    version: str = ""
    source: str = ""

    @property
    def horizon_s(self) -> float:
        """How far back the ledger must remember firings for these limits (at least 7 days)."""
        longest = max((r.limits.cooldown_s for r in self.rules), default=0.0)
        return max(7 * 86400.0, longest)


EMPTY_RULES = RuleSet(rules=(), version="empty")


def dwell_marks(rules: RuleSet, base: tuple[float, ...] = ()) -> tuple[float, ...]:
    """The presence engine's dwell marks plus every enabled rule's `dwell_at_least`.

    The offer engine checks dwell conditions at dwell marks (confirmed by a sighting), so the
    pipeline merges these into `PresenceSettings.dwell_marks_s` for exact timing.
    """
    extra = {r.when.dwell_s for r in rules.rules if r.enabled and r.when.dwell_s > 0}
    return tuple(sorted(set(base) | extra))


def parse_rules(text: str, filename: str, *, zones: Collection[str] | None) -> RuleSet:
    """Validate a whole rules file; `zones` is the configured zone names (None: not checked)."""
    data, lines = load_yaml(text, filename)
    r = Reader(filename.rsplit("/", 1)[-1], data, lines)
    if data is not None and not isinstance(data, dict):
        r.error("", "the top level must be a mapping with an `offers` list")
        r.check()
    r.known_keys("", _TOP_KEYS)
    raw_version = r.raw("version", None)
    if raw_version is not None and not isinstance(raw_version, str | int | float):
        r.error("version", "expected a short text label")
    version = str(raw_version) if raw_version is not None else _digest(text)
    store_limits = _limits(r, "limits", _STORE_LIMIT_KEYS)
    if not r.has("offers"):
        r.error("offers", "is required (a list of offer rules, may be empty)")
    rules: list[OfferRule] = []
    seen: dict[str, str] = {}
    for path in r.each("offers"):
        rule = _rule(r, path, zones)
        if rule is None:
            continue
        if rule.id in seen:
            first = f"{seen[rule.id]}, line {r.line(seen[rule.id] + '.id')}"
            r.error(f"{path}.id", f'duplicate id "{rule.id}" (first used at {first})')
        seen.setdefault(rule.id, path)
        rules.append(rule)
    _raise_with_ids(r, filename)
    return RuleSet(rules=tuple(rules), limits=store_limits, version=version, source=filename)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _raise_with_ids(r: Reader, filename: str) -> None:
    """Re-key errors inside `offers[i]` with the rule's id so a marketer finds the rule."""
    if not r.errors:
        return
    out: list[ConfigError] = []
    for e in sorted(r.errors, key=lambda e: e.line or 0):
        m = re.match(r"offers\[(\d+)\]", e.key)
        rid = r.raw(f"offers[{m.group(1)}].id", None) if m else None
        key = f"{e.key} ({rid})" if isinstance(rid, str) and rid else e.key
        out.append(ConfigError(e.path, key, e.line, e.message))
    raise ConfigErrors(out) if len(out) > 1 else out[0]


def _rule(r: Reader, path: str, zones: Collection[str] | None) -> OfferRule | None:
    if not isinstance(r.raw(path), dict):
        r.error(path, "expected a mapping with id, description, when, limits, payload")
        return None
    r.known_keys(path, _RULE_KEYS)
    rid = r.str_(f"{path}.id", "", required=True, pattern=_ID)
    # Optional: a marketer's note for people; reports fall back to the id.
    desc = r.str_(f"{path}.description", rid)
    r.mapping(f"{path}.when")
    return OfferRule(id=rid, description=desc, when=_when(r, f"{path}.when", zones),
                     limits=_limits(r, f"{path}.limits", _LIMIT_KEYS),
                     payload=_payload(r, f"{path}.payload"),
                     enabled=r.bool_(f"{path}.enabled", True))


def _when(r: Reader, path: str, zones: Collection[str] | None) -> Conditions:
    r.known_keys(path, _WHEN_KEYS)
    zone = r.opt_str(f"{path}.zone")
    if zone is not None and zones is not None and zone not in zones:
        known = ", ".join(sorted(zones)) or "none configured"
        r.error(f"{path}.zone", f'unknown zone "{zone}" (known zones: {known})')
    visits = r.int_(f"{path}.visits_at_least", 1, 1, 10_000)
    within = r.duration(f"{path}.visits_within", 0.0, minimum=86400.0)
    start = r.parsed(f"{path}.start_date", None, _date, "a date such as 2025-06-01")
    end = r.parsed(f"{path}.end_date", None, _date, "a date such as 2025-06-30")
    if start is not None and end is not None and end < start:
        r.error(f"{path}.end_date", f"impossible window: ends {end} before it starts {start}")
    return Conditions(
        zone=zone, dwell_s=r.duration(f"{path}.dwell_at_least", 0.0),
        segment=_segment(r, f"{path}.segment"), visits_at_least=visits,
        visits_within_days=within / 86400.0 if within else None,
        days=_days(r, f"{path}.days"), hours=_hours(r, f"{path}.hours"),
        start_date=start, end_date=end,
    )


def _date(value: Any) -> dt.date | None:
    # YAML already turns an unquoted 2025-06-01 into a date; a quoted one is a string.
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _segment(r: Reader, path: str) -> tuple[tuple[str, frozenset[str]], ...]:
    out: list[tuple[str, frozenset[str]]] = []
    for key, value in r.mapping(path).items():
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                 for v in values):
            r.error(f"{path}.{key}", "expected a value or a non-empty list of values")
            continue
        out.append((key, frozenset(str(v) for v in values)))
    return tuple(out)


def _days(r: Reader, path: str) -> frozenset[int]:
    value = r.raw(path, None)
    if value is None:
        return frozenset(range(7))
    if isinstance(value, str) and value in _DAY_SETS:
        return _DAY_SETS[value]
    items = value if isinstance(value, list) else [value]
    days: set[int] = set()
    for item in items:
        name = item.lower()[:3] if isinstance(item, str) else None
        if name not in DAY_NAMES:
            r.error(path, f"expected day names ({', '.join(DAY_NAMES)}) or weekdays/weekends,"
                          f" got {item!r}")
            return frozenset(range(7))
        days.add(DAY_NAMES.index(name))
    if not days:
        r.error(path, "impossible window: no days listed")
    return frozenset(days)


def _hours(r: Reader, path: str) -> tuple[Window, ...]:
    value = r.raw(path, None)
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[Window] = []
    for item in items:
        window = _window(item)
        if window is None:
            r.error(path, f'expected "HH:MM-HH:MM" (store-local; an end before the start runs'
                          f" overnight), got {item!r}")
        elif window.start == window.end:
            r.error(path, f"impossible window: {item!r} is empty (start equals end)")
        else:
            out.append(window)
    if not items:
        r.error(path, "impossible window: no hours listed")
    return tuple(out)


def _window(value: Any) -> Window | None:
    m = _HHMM.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        return None
    return Window(h1 * 60 + m1, h2 * 60 + m2)


def _limits(r: Reader, path: str, allowed: frozenset[str]) -> Limits:
    r.mapping(path)
    r.known_keys(path, allowed)
    r.mapping(f"{path}.per_customer")
    r.known_keys(f"{path}.per_customer", {"day", "week"})
    day = _cap(r, f"{path}.per_customer.day")
    week = _cap(r, f"{path}.per_customer.week")
    if day is not None and week is not None and week < day:
        r.error(f"{path}.per_customer.week",
                f"impossible cap: {week} per week is below {day} per day")
    return Limits(
        cooldown_s=r.duration(f"{path}.cooldown", 0.0) if "cooldown" in allowed else 0.0,
        per_day=day, per_week=week, per_hour=_cap(r, f"{path}.global_per_hour"),
        max_per_visit=_cap(r, f"{path}.max_per_visit"),
    )


def _cap(r: Reader, path: str) -> int | None:
    return r.int_(path, 0, 1, 1_000_000) if r.raw(path, None) is not None else None


def _payload(r: Reader, path: str) -> Mapping[str, Any]:
    value = r.mapping(path)
    bad = _not_json(value, path)
    if bad is not None:
        r.error(bad, "expected text, numbers, true/false, lists or mappings (the payload is"
                     " sent as JSON; quote dates)")
    return MappingProxyType(value)


def _not_json(value: Any, path: str) -> str | None:
    """The key path of the first value JSON cannot carry (e.g. a YAML date), or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            bad = _not_json(v, f"{path}.{k}")
            if bad is not None:
                return bad
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            bad = _not_json(v, f"{path}[{i}]")
            if bad is not None:
                return bad
        return None
    return None if value is None or isinstance(value, str | int | float | bool) else path


# -- the `offers` section of the gateway config ------------------------------------------

@dataclass(frozen=True, slots=True)
class OfferSettings:
    rules_path: str | None = None          # None: offers are off
    command_key: bytes = field(default=b"", repr=False)   # empty: remote reload refused
    command_max_age_s: float = 300.0


SecretResolver = Callable[[Reader, str, str], "str | None"]


def read_settings(r: Reader, section: str, resolve_secret: SecretResolver) -> OfferSettings:
    """Read `offers: {rules, command_key, command_max_age}` through the shared Reader.

    `resolve_secret(r, key, spec)` turns "env:NAME" / "file:PATH" into the key text (config.py
    has one); the key authenticates `commands/offers.reload` and must be >= 16 characters.
    """
    r.mapping(section)
    r.known_keys(section, {"rules", "command_key", "command_max_age"})
    key = b""
    spec = r.opt_str(f"{section}.command_key")
    if spec is not None:
        text = resolve_secret(r, f"{section}.command_key", spec)
        key = (text or "").encode()
        if text is not None and len(key) < 16:
            r.error(f"{section}.command_key", "the key must be at least 16 characters")
    rules = r.opt_str(f"{section}.rules")
    return OfferSettings(rules_path=None if rules is None else r.file_path(rules), command_key=key,
                         command_max_age_s=r.duration(f"{section}.command_max_age", 300.0,
                                                      minimum=10.0))
