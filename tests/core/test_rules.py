"""Offer rules parsing: the issue's shape, extensions, and every error kind with file:line,
key path and rule id."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from presence_gateway.core.offers.rules import Window, parse_rules
from presence_gateway.errors import ConfigError, ConfigErrors

ZONES = {"shoes", "entrance", "cafe"}
ISSUE_EXAMPLE = """\
offers:
  - id: shoes-gold
    description: Gold members who browse shoes for 3 minutes
    when:
      zone: shoes                 # optional: any zone when absent
      dwell_at_least: 3m
      segment: {tier: [gold, platinum]}
      visits_at_least: 2          # this visit included
      days: [mon, tue, wed, thu, fri]
      hours: "09:00-20:00"        # store-local time
    limits:
      cooldown: 1h
      per_customer: {day: 1, week: 3}
      global_per_hour: 200
      max_per_visit: 1
    payload: {campaign: SHOES10, channel: app_push}
"""


def errors_of(text: str, zones: set[str] | None = ZONES) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        parse_rules(text, "config/offers.yaml", zones=zones)
    exc = info.value
    return [str(e) for e in exc.errors] if isinstance(exc, ConfigErrors) else [str(exc)]


def with_rule(body: str, rid: str = "r1") -> str:
    return f"offers:\n  - id: {rid}\n    description: test rule\n{body}"


def test_issue_example_parses_exactly() -> None:
    rs = parse_rules(ISSUE_EXAMPLE, "offers.yaml", zones=ZONES)
    (rule,) = rs.rules
    assert rule.id == "shoes-gold"
    w = rule.when
    assert (w.zone, w.dwell_s, w.visits_at_least) == ("shoes", 180.0, 2)
    assert w.segment == (("tier", frozenset({"gold", "platinum"})),)
    assert w.days == frozenset({0, 1, 2, 3, 4})
    assert w.hours == (Window(9 * 60, 20 * 60),)
    lim = rule.limits
    assert (lim.cooldown_s, lim.per_day, lim.per_week, lim.per_hour, lim.max_per_visit) == (
        3600.0, 1, 3, 200, 1)
    assert dict(rule.payload) == {"campaign": "SHOES10", "channel": "app_push"}
    assert rs.version.startswith("sha256:")


def test_shipped_example_file_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "offers.example.yaml"
    rs = parse_rules(path.read_text(), path.name, zones=None)
    assert len(rs.rules) >= 4
    assert rs.rules[0].id == "shoes-gold"


def test_extensions_dates_overnight_lists_store_limits() -> None:
    text = """\
version: spring-1
limits: {max_per_visit: 2, per_customer: {day: 3}, global_per_hour: 100}
offers:
  - id: late
    description: night owls
    enabled: false
    when:
      hours: ["22:00-02:00", "12:00-13:00"]
      days: weekends
      start_date: 2025-06-01
      end_date: "2025-06-30"
      visits_at_least: 3
      visits_within: 30d
      segment: {tier: gold}
"""
    rs = parse_rules(text, "o.yaml", zones=ZONES)
    (rule,) = rs.rules
    assert rs.version == "spring-1"
    assert (rs.limits.max_per_visit, rs.limits.per_day, rs.limits.per_hour) == (2, 3, 100)
    assert not rule.enabled
    assert rule.when.hours[0].overnight and not rule.when.hours[1].overnight
    assert rule.when.days == frozenset({5, 6})
    assert (rule.when.start_date, rule.when.end_date) == (dt.date(2025, 6, 1),
                                                          dt.date(2025, 6, 30))
    assert rule.when.visits_within_days == 30.0
    assert rule.when.zone is None and rule.when.dwell_s == 0.0


def test_zone_check_is_skipped_without_a_zone_list() -> None:
    rs = parse_rules(with_rule("    when: {zone: anywhere}\n"), "o.yaml", zones=None)
    assert rs.rules[0].when.zone == "anywhere"


@pytest.mark.parametrize(("body", "expected"), [
    ("    when: {zone: shoez}\n",
     'offers.yaml:4 offers[0].when.zone (r1): unknown zone "shoez" (known zones: cafe,'
     " entrance, shoes)"),
    ("    when:\n      dwell_at_least: 3 minutes\n",
     'offers.yaml:5 offers[0].when.dwell_at_least (r1): expected a duration such as 30s, 5m,'
     ' 2h (at least 0s), got "3 minutes"'),
    ("    limits:\n      cooldown: soon\n",
     "offers.yaml:5 offers[0].limits.cooldown (r1): expected a duration"),
    ("    when:\n      hours: \"10:00-10:00\"\n",
     "offers.yaml:5 offers[0].when.hours (r1): impossible window: '10:00-10:00' is empty"),
    ("    when:\n      hours: \"9-17\"\n",
     "offers.yaml:5 offers[0].when.hours (r1): expected \"HH:MM-HH:MM\""),
    ("    when:\n      hours: \"09:00-25:00\"\n",
     "offers.yaml:5 offers[0].when.hours (r1): expected \"HH:MM-HH:MM\""),
    ("    when:\n      start_date: 2025-07-01\n      end_date: 2025-06-01\n",
     "offers.yaml:6 offers[0].when.end_date (r1): impossible window: ends 2025-06-01 before"
     " it starts 2025-07-01"),
    ("    when:\n      start_date: next week\n",
     "offers.yaml:5 offers[0].when.start_date (r1): expected a date such as 2025-06-01"),
    ("    when:\n      days: [mon, funday]\n",
     "offers.yaml:5 offers[0].when.days (r1): expected day names"),
    ("    when:\n      days: []\n",
     "offers.yaml:5 offers[0].when.days (r1): impossible window: no days listed"),
    ("    when:\n      colour: red\n",
     "offers.yaml:5 offers[0].when.colour (r1): unknown key (expected one of: days,"),
    ("    limits:\n      per_customer: {day: 3, week: 2}\n",
     "offers.yaml:5 offers[0].limits.per_customer.week (r1): impossible cap: 2 per week is"
     " below 3 per day"),
    ("    limits:\n      per_customer: {month: 3}\n",
     "offers.yaml:5 offers[0].limits.per_customer.month (r1): unknown key"),
    ("    limits:\n      global_per_hour: 0\n",
     "offers.yaml:5 offers[0].limits.global_per_hour (r1): expected an integer 1..1e+06"),
    ("    when:\n      visits_at_least: 0\n",
     "offers.yaml:5 offers[0].when.visits_at_least (r1): expected an integer"),
    ("    when:\n      segment: {tier: []}\n",
     "offers.yaml:5 offers[0].when.segment.tier (r1): expected a value or a non-empty list"),
    ("    payload: {until: 2025-06-30}\n",
     "offers.yaml:4 offers[0].payload.until (r1): expected text, numbers"),
    ("    colour: red\n",
     "offers.yaml:4 offers[0].colour (r1): unknown key (expected one of: description,"),
])
def test_each_error_names_file_line_key_and_rule_id(body: str, expected: str) -> None:
    (msg,) = errors_of(with_rule(body))
    assert msg.startswith(expected), msg


def test_missing_id_is_an_error_a_missing_description_is_not() -> None:
    msgs = errors_of("offers:\n  - when: {zone: shoes}\n")
    assert msgs == ["offers.yaml:2 offers[0].id: is required"]
    [rule] = parse_rules("offers:\n  - id: r1\n    when: {zone: shoes}\n", "offers.yaml",
                         zones=None).rules
    assert rule.description == "r1"  # the docs never said it was required


def test_duplicate_id_names_both_places() -> None:
    text = with_rule("", "dup") + "  - id: dup\n    description: again\n"
    (msg,) = errors_of(text)
    assert msg == ('offers.yaml:4 offers[1].id (dup): duplicate id "dup" (first used at'
                   " offers[0], line 2)")


def test_whole_file_is_rejected_and_every_error_reported() -> None:
    text = ISSUE_EXAMPLE + """\
  - id: broken
    description: two mistakes
    when: {zone: nowhere, hours: "18:00-18:00"}
    limits: {cooldown: never}
"""
    msgs = errors_of(text)
    assert len(msgs) == 3
    assert all("(broken)" in m for m in msgs)
    assert msgs[0].startswith("offers.yaml:19 offers[1].when.zone (broken)")
    assert msgs[2].startswith("offers.yaml:20 offers[1].limits.cooldown (broken)")


def test_top_level_errors() -> None:
    assert errors_of("offer: []\n") == [
        "offers.yaml:1 offer: unknown key (expected one of: limits, offers, version)",
        "offers.yaml:1 offers: is required (a list of offer rules, may be empty)"]
    assert errors_of("- a\n- b\n")[0] == (
        "offers.yaml:1: the top level must be a mapping with an `offers` list")
    assert errors_of("offers: [\n")[0].startswith("config/offers.yaml:2: not valid YAML")
    assert errors_of("offers: []\nlimits: {cooldown: 1h}\n") == [
        "offers.yaml:2 limits.cooldown: unknown key (expected one of: global_per_hour,"
        " max_per_visit, per_customer)"]


def test_empty_rule_list_is_valid() -> None:
    assert parse_rules("offers: []\n", "o.yaml", zones=ZONES).rules == ()


def test_offers_config_section() -> None:
    from presence_gateway.core.offers.rules import read_settings
    from presence_gateway.core.yamlread import Reader, load_yaml

    def resolve(r: Reader, key: str, spec: str) -> str | None:
        return {"env:KEY": "a-command-key-0123456789", "env:SHORT": "short"}.get(spec)

    text = "offers:\n  rules: /etc/offers.yaml\n  command_key: env:KEY\n  command_max_age: 2m\n"
    r = Reader("gw.yaml", *load_yaml(text, "gw.yaml"))
    s = read_settings(r, "offers", resolve)
    assert r.errors == []
    assert (s.rules_path, s.command_key, s.command_max_age_s) == (
        "/etc/offers.yaml", b"a-command-key-0123456789", 120.0)
    assert "a-command-key" not in repr(s)
    r = Reader("gw.yaml", *load_yaml("offers:\n  command_key: env:SHORT\n  rule: x\n", "gw.yaml"))
    read_settings(r, "offers", resolve)
    assert sorted(str(e) for e in r.errors) == [
        "gw.yaml:2 offers.command_key: the key must be at least 16 characters",
        "gw.yaml:3 offers.rule: unknown key (expected one of: command_key, command_max_age,"
        " rules)"]
