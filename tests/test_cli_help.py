"""Every command and subcommand answers --help and -h with exit 0 (some rejected them once)."""

from __future__ import annotations

import argparse

import pytest

from presence_gateway.cli.main import main, parser


def _paths(p: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for action in p._actions:  # argparse keeps its subparsers here; no public accessor exists
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _paths(sub, (*prefix, name))
    return out


PATHS = _paths(parser())


def test_the_tree_has_every_command() -> None:
    names = {p[0] for p in PATHS if p}
    assert {"run", "replay", "check-config", "demo", "doctor", "monitor", "decode", "record",
            "identities", "offers", "radio", "app-token"} <= names
    assert ("identities", "import") in PATHS and ("offers", "simulate") in PATHS


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "top")
def test_help_exits_0(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--help", "-h"):
        assert main([*path, flag]) == 0
        assert "usage:" in capsys.readouterr().out
