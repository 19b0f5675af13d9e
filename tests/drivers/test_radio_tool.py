"""`presence-gateway radio`: the CLI on this machine's real interfaces (no Wi-Fi adapter here)."""

from __future__ import annotations

import pytest

from presence_gateway.cli.main import main as cli
from presence_gateway.firmware_tools.radio import list_interfaces, plan


def main(argv: list[str]) -> int:
    return cli(["radio", *argv])


def test_list_shows_loopback_as_not_wifi(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    rows = {row[0]: row for row in list_interfaces()}
    assert rows["lo"][2:] == ("loopback", "no (not Wi-Fi)")
    assert "lo" in capsys.readouterr().out


def test_plan_default_and_all() -> None:
    lines = plan("1,6,11", 0.25)
    assert [line.split()[1:3] for line in lines[1:4]] == [["1", "2412"], ["6", "2437"],
                                                          ["11", "2462"]]
    assert "cycle 0.75 s" in lines[-1]
    assert len(plan("all", 0.1)) == 2 + 37


def test_bad_usage_and_missing_interface(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--channels", "x"]) == 2
    assert main(["bogus"]) == 2
    assert main(["monitor", "nosuchif0"]) == 1
    err = capsys.readouterr().err
    assert "nosuchif0: no such interface" in err
    assert main(["--help"]) == 0 and main(["plan", "-h"]) == 0
    assert "monitor" in capsys.readouterr().out
