"""Bad config files stop the gateway at start: exit 2, file/key/line message, nothing published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BAD_CONFIGS = {
    "port_not_int": ("mqtt:\n  port: abc\n", "gateway.yaml:2 mqtt.port: expected an integer"),
    "port_range": ("mqtt:\n  port: 0\n", "gateway.yaml:2 mqtt.port"),
    "unknown_section": ("mqttt:\n  port: 1\n", "gateway.yaml:1 mqttt: unknown key"),
    "unknown_key": ("storage:\n  pth: x\n", "gateway.yaml:2 storage.pth: unknown key"),
    "bad_qos": ("mqtt:\n  qos: 5\n", "gateway.yaml:2 mqtt.qos"),
    "bad_driver": ("drivers:\n  - type: sonar\n", "gateway.yaml:2 drivers[0].type"),
    "missing_paths": ("drivers:\n  - type: ble_replay\n", "gateway.yaml:2 drivers[0].paths"),
    "bad_duration": ("presence:\n  visit_timeout: forever\n",
                     "gateway.yaml:2 presence.visit_timeout"),
    "missing_secret_env": ("privacy:\n  secret: env:PG_TEST_UNSET_SECRET\n",
                           "gateway.yaml:2 privacy.secret: environment variable"),
    "bad_timezone": ("store:\n  timezone: Nowhere/Land\n", "gateway.yaml:2 store.timezone"),
    "not_yaml": ("mqtt: [\n", "gateway.yaml:"),
    "not_mapping": ("- 1\n- 2\n", "top level must be a mapping"),
    "bare_list_item": ("drivers:\n  -\n", "gateway.yaml:2 drivers[0]: expected a mapping"),
    "python_tag": ("store:\n  id: !!python/object/apply:os.system [id]\n",
                   "gateway.yaml:2: the YAML tag '!!python/object/apply:os.system'"),
}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "presence_gateway", *args], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_check_config_rejects_bad_file(tmp_path: Path, name: str) -> None:
    text, expected = BAD_CONFIGS[name]
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    res = run_cli("check-config", str(path))
    assert res.returncode == 2, res.stderr
    assert expected in res.stderr
    assert "Traceback" not in res.stderr


def test_check_config_accepts_example() -> None:
    res = subprocess.run([sys.executable, "-m", "presence_gateway", "check-config",
                          "config/gateway.example.yaml"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60,
                         env={"PG_SECRET": "x" * 32, "MQTT_PASSWORD": "pw", "PG_SYNC_KEY": "k" * 20,
                              "PG_COMMAND_KEY": "c" * 20, "PATH": "/usr/bin"})
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    res = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "cannot read file" in res.stderr


def test_run_with_bad_config_starts_nothing(tmp_path: Path, local_broker: object) -> None:
    """`run` with a bad file exits 2 before touching the broker or the database."""
    from tests.mqtt_helpers import Collector
    broker = local_broker
    path = tmp_path / "gateway.yaml"
    path.write_text(f"storage:\n  path: {tmp_path / 'g.db'}\nmqtt:\n  qos: 7\n")
    with Collector(broker.host, broker.port, "#") as seen:  # type: ignore[attr-defined]
        res = run_cli("run", "-c", str(path), "--mqtt", broker.url)  # type: ignore[attr-defined]
        assert res.returncode == 2 and "mqtt.qos" in res.stderr
        assert seen.wait_quiet(0.5) == []
    assert not (tmp_path / "g.db").exists()
