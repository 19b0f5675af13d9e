"""Every command and subcommand answers --help and -h with exit 0 (some rejected them once)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

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
ROOT = Path(__file__).resolve().parents[1]


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


def test_a_replay_starts_without_the_web_and_scapy_stacks(tmp_path: Path) -> None:
    """A gateway's start loads what it runs: aiohttp (a tenth of a second with its TLS context)
    only with `http.listen` or the dashboard, scapy only for its reader fallback. Measured
    when aiohttp was moved out: `replay` of a one-frame capture 0.40-0.50 -> 0.30 s, 56 ->
    44 MB RSS on the development VM."""
    pcap = ROOT / "gateway" / "data" / "demo" / "wifi_tcpdump_exthdr.pcap"
    code = ("import sys; from presence_gateway.cli.main import main; "
            f"rc = main(['replay', {str(pcap)!r}, '--no-mqtt']); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'scapy'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []", out
