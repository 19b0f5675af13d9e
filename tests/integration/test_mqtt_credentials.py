"""The broker password never rides on a command line, and env:/file: passwords still work.

`--mqtt mqtts://user:pass@host` put the password in `ps` for every user of the machine (and
in shell history). Every command taking a broker URL (and the config's `mqtt.url`) now
refuses a URL with a password, exit 2, saying how to pass it; the error never repeats it.
The password comes from `--mqtt-password-from env:NAME|file:PATH` or `mqtt.password`, the
same resolver as every config secret. Real Mosquitto requiring a password (mosquitto_passwd).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from presence_gateway.cli.doctor import run_doctor
from presence_gateway.cli.main import main
from tests.integration import e2e_data as d

USER, PASSWORD = "gw-store-7", "pw-Zq81-only-from-env-or-file"
URL_WITH_PASSWORD = f"mqtts://{USER}:{PASSWORD}@broker.example:8883"

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None and not os.access("/usr/bin/mosquitto_passwd",
                                                               os.X_OK),
    reason="mosquitto_passwd not found (Debian: apt-get install mosquitto)")


@pytest.mark.parametrize("argv", [
    ["replay", "x.jsonl", "--mqtt", URL_WITH_PASSWORD],
    ["run", "--mqtt", URL_WITH_PASSWORD],
    ["monitor", "--mqtt", URL_WITH_PASSWORD],
    ["demo", "--mqtt", URL_WITH_PASSWORD],
], ids=["replay", "run", "monitor", "demo"])
def test_a_password_in_a_command_line_url_is_refused(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("--mqtt: a password in the URL is refused"), err
    assert "--mqtt-password-from env:NAME or file:PATH" in err and "mqtt.password" in err
    assert PASSWORD not in err


def test_a_password_in_the_config_url_is_refused(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"mqtt:\n  url: '{URL_WITH_PASSWORD}'\n")
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "gateway.yaml:2 mqtt.url: a password in the URL is refused" in err
    assert PASSWORD not in err


def test_a_password_source_that_cannot_be_read_is_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["monitor", "--mqtt", f"mqtt://{USER}@127.0.0.1:1", "--mqtt-password-from",
            "env:PG_TEST_UNSET_PASSWORD"]
    assert main(argv) == 2
    assert "--mqtt-password-from: environment variable PG_TEST_UNSET_PASSWORD is not set" \
        in capsys.readouterr().err


def replay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    rec = tmp_path / "visit.jsonl"
    rec.write_text(d.ble_recording(["anon"], d.T0, 3))
    env = {**d.env(), "PG_TEST_MQTT_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "presence_gateway", "replay", str(rec),
                           "--db", str(tmp_path / "gw.db"), *args],
                          capture_output=True, text=True, timeout=60, cwd=d.ROOT, env=env)


@pytest.mark.parametrize("source", ["env", "file"])
def test_a_password_from_env_or_file_reaches_a_broker_that_requires_it(
        tmp_path: Path, mosquitto: Any, source: str) -> None:
    broker = mosquitto(users={USER: PASSWORD})
    pw_file = tmp_path / "mqtt.pw"
    pw_file.write_text(PASSWORD + "\n")
    spec = "env:PG_TEST_MQTT_PASSWORD" if source == "env" else f"file:{pw_file}"
    out = replay(tmp_path, "--mqtt", f"mqtt://{USER}@{broker.host}:{broker.port}",
                 "--mqtt-password-from", spec)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "delivered" in out.stderr and "outbox left: 0" in out.stderr
    assert PASSWORD not in out.stdout + out.stderr


def test_doctor_checks_the_credentials_of_the_config(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto(users={USER: PASSWORD})
    (tmp_path / "mqtt.pw").write_text(PASSWORD + "\n")
    (tmp_path / "wrong.pw").write_text("not-the-password\n")

    def doctor(pw_file: str) -> tuple[int, str]:
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(f"mqtt: {{url: 'mqtt://{USER}@{broker.host}:{broker.port}',"
                       f" password: 'file:{tmp_path / pw_file}'}}\n"
                       f"storage: {{path: '{tmp_path}/g.db'}}\n")
        lines: list[str] = []
        rc = run_doctor(str(cfg), lines.append)
        return rc, next(x for x in lines if " broker " in x)

    rc, line = doctor("mqtt.pw")
    assert line.startswith("ok    broker") and "answers MQTT" in line, line
    rc, line = doctor("wrong.pw")
    assert rc == 1 and line.startswith("FAIL  broker") and "credentials" in line, line
