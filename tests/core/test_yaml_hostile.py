"""Hostile YAML: config and rules files only ever fail with ConfigError naming file and line.

The fuzz mutates the shipped example files line by line with the constructs that used to escape
as tracebacks (bare list items, explicit tags, recursive aliases, odd keys) and with random text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.config import parse_config
from presence_gateway.core.offers.rules import parse_rules
from presence_gateway.core.yamlread import load_yaml
from presence_gateway.errors import ConfigError, ConfigErrors
from tests.fuzzing import budget

ROOT = Path(__file__).resolve().parents[2]
CONFIG = (ROOT / "config/gateway.example.yaml").read_text()
RULES = (ROOT / "config/offers.example.yaml").read_text()
ENV = {"PG_SECRET": "x" * 32, "MQTT_PASSWORD": "pw", "PG_SYNC_KEY": "k" * 20,
       "PG_COMMAND_KEY": "c" * 20}

TOKENS = ["-", "- ", "  -", "!!python/object:os.system x", "!!binary aGk=", "!!set {a}",
          "!custom x", "&a [*a]", "*nowhere", "? [a]", ": b", "<<: {a: 1}", "{", "[", "'",
          '"\\x', "\t", "%YAML 1.1", "---", "...", "1e999", "0o777", "2001-02-30", "~",
          "key: !!int notanumber", "key: !!float x", "\x00", "\ufeff", "|", ">-"]


def _parse_config(text: str) -> object:
    return parse_config(text, "/etc/pg/gateway.yaml", env=ENV)


def _parse_rules(text: str) -> object:
    return parse_rules(text, "/etc/pg/offers.yaml", zones=None)


@pytest.mark.parametrize("text, line, says", [
    ("store:\n  id: !!python/object:os.system x\n", 2, "!!python/object:os.system"),
    ("store:\n  id: !!binary aGk=\n", 2, "!!binary"),
    ("? [a]\n: b\n", 1, "key must be a plain value"),
    ("a: &x [*x]\n", None, "recursive alias"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,"
     "*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
     "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", 1, "aliases expanding"),
])
def test_refused_yaml_names_the_line(text: str, line: int | None, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, "x.yaml")
    assert info.value.line == line and says in str(info.value)


def test_bare_list_item_is_a_config_error_at_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        _parse_config("drivers:\n  -\n")
    assert str(info.value).startswith("gateway.yaml:2 drivers[0]:")
    with pytest.raises((ConfigError, ConfigErrors)):
        _parse_rules("offers:\n  -\n")


def _mutate(text: str, at: int, token: str, replace: bool) -> str:
    lines = text.splitlines()
    i = at % (len(lines) + 1)
    if replace and i < len(lines):
        lines[i] = lines[i][: len(lines[i]) // 2] + token
    else:
        lines.insert(i, token)
    return "\n".join(lines) + "\n"


@budget(300)
@given(st.integers(0, 10_000), st.sampled_from(TOKENS) | st.text(max_size=12), st.booleans(),
       st.sampled_from([(CONFIG, _parse_config), (RULES, _parse_rules)]))
def test_mutated_example_files_fail_only_with_config_errors(
        at: int, token: str, replace: bool,
        target: tuple[str, Callable[[str], object]]) -> None:
    text, parse = target
    with contextlib.suppress(ConfigError, ConfigErrors):
        parse(_mutate(text, at, token, replace))


@budget(300)
@given(st.lists(st.sampled_from(list("-:!&*?[]{}|>'\"#%@ \n\tab1.") + TOKENS), max_size=30))
def test_random_yaml_text_fails_only_with_config_errors(parts: list[str]) -> None:
    text = "".join(parts)
    for parse in (_parse_config, _parse_rules):
        with contextlib.suppress(ConfigError, ConfigErrors):
            parse(text)
