"""`central run` options: flags, a `-c FILE`, and the one error path (exit 2, one line)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from presence_gateway.cli.central import options
from presence_gateway.cli.main import main, parser
from presence_gateway.core.config import Endpoint, parse_config
from presence_gateway.errors import ConfigError, ConfigErrors


def args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["central", "run", *argv])


def test_flags_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENTRAL_PW", "s3cret")
    conf = tmp_path / "central.yaml"
    conf.write_text("central:\n  brokers: [mqtt://n1:1883, mqtt://n2:1884]\n"
                    "  db: postgresql://c@db/fleet\n  partitions: 64\n  lease: 5s\n"
                    "  password: env:CENTRAL_PW\n")
    o, db = options(args("-c", str(conf), "--partitions", "32"))
    assert o.brokers == (Endpoint("n1", 1883), Endpoint("n2", 1884))
    assert (db, o.partitions, o.lease_s) == ("postgresql://c@db/fleet", 32, 5.0)
    assert o.password == "s3cret" and "s3cret" not in repr(o)
    o2, db2 = options(args("--broker", "mqtt://x", "--db", "sqlite:///c.db"))
    assert o2.brokers == (Endpoint("x", 1883),) and db2 == "sqlite:///c.db"
    assert o2.instance  # host-pid by default: unique per process


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["central", "run", "--db", f"sqlite:///{tmp_path}/c.db"]) == 2
    assert "--broker" in capsys.readouterr().err
    assert main(["central", "run", "--broker", "http://x", "--db", "sqlite:///c.db"]) == 2
    assert main(["central", "report", "--db", "mysql://x/y"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("central:\n  brokerz: []\n")
    assert main(["central", "run", "-c", str(bad)]) == 2
    assert "brokerz" in capsys.readouterr().err


def test_servers_config_errors() -> None:
    with pytest.raises((ConfigError, ConfigErrors), match="not both"):
        parse_config("mqtt:\n  servers: [mqtt://a]\n  host: b\n", "x.yaml", env={})
    with pytest.raises((ConfigError, ConfigErrors), match="one scheme"):
        parse_config("mqtt:\n  servers: [mqtt://a, mqtts://b]\n", "x.yaml", env={})
    with pytest.raises((ConfigError, ConfigErrors), match="topic_layout"):
        parse_config("mqtt:\n  topic_layout: v3\n", "x.yaml", env={})
