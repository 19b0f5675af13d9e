"""The install path as INSTALL.md writes it, into a temporary root, started from `/`.

Steps as an installer takes them: `presence-gateway init <root>/etc/presence-gateway`, a
secrets.env, two edits to the config (broker, state folder), then the shipped unit's own
ExecStartPre/ExecStart lines run with systemd's semantics for the `-` and `+` prefixes, the
EnvironmentFile, and the working directory `/`. This machine has neither the Wi-Fi dongle nor
BlueZ: each radio's driver degrades alone and the gateway still comes up online.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker
from tests.conftest import Subscriber

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "firmware_tools" / "presence-gateway.service"
EXE = Path(sys.executable).parent / "presence-gateway"


def unit_for(root: Path, text: str | None = None) -> str:
    """The shipped unit with its two install locations moved into `root` (and a Wi-Fi
    interface name that cannot exist here, so the monitor-mode step fails as on a Pi
    without its dongle)."""
    text = UNIT.read_text() if text is None else text
    text = text.replace("/opt/presence-gateway/.venv/bin/presence-gateway", str(EXE))
    text = text.replace("/etc/presence-gateway", str(root / "etc" / "presence-gateway"))
    return text.replace("radio monitor wlan1", "radio monitor pgnodongle0")


def directives(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_unit_verifies_clean_and_is_hardened(tmp_path: Path) -> None:
    (tmp_path / "etc" / "presence-gateway").mkdir(parents=True)
    unit = tmp_path / "presence-gateway.service"
    unit.write_text(unit_for(tmp_path))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert m is not None, security.stdout[-500:]
    assert float(m.group(1)) <= 3.0, security.stdout
    caps = directives(unit.read_text(), "CapabilityBoundingSet")
    assert caps == ["CAP_NET_RAW CAP_NET_ADMIN"]


def test_installed_from_the_shipped_files_it_starts_from_root(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    etc = tmp_path / "etc" / "presence-gateway"
    state = tmp_path / "var" / "lib" / "presence-gateway"
    state.mkdir(parents=True)
    units = tmp_path / "etc" / "systemd" / "system"
    init = subprocess.run([str(EXE), "init", str(etc), "--unit-dir", str(units)],
                          capture_output=True, text=True, cwd="/", timeout=60)
    assert init.returncode == 0, init.stderr
    installed = (units / "presence-gateway.service").read_text()
    assert installed == UNIT.read_text()
    (etc / "secrets.env").write_text(
        f"PG_SECRET={'s' * 64}\nMQTT_PASSWORD=unused\nPG_SYNC_KEY={'k' * 32}\n"
        f"PG_COMMAND_KEY={'c' * 32}\n")
    config = etc / "gateway.yaml"
    text = config.read_text()
    text = re.sub(r"(?m)^  port: 1883\b", f"  port: {broker.port}", text)
    text = text.replace("/var/lib/presence-gateway/gateway.db", str(state / "gateway.db"))
    config.write_text(text)

    unit = unit_for(tmp_path, installed)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for spec in directives(unit, "EnvironmentFile"):
        path = Path(spec.lstrip("-"))
        env |= dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    for spec in directives(unit, "ExecStartPre"):
        tolerate = spec.startswith("-") or spec[:2] == "+-"
        argv = shlex.split(spec.lstrip("-+"))
        pre = subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=60)
        assert pre.returncode == 0 or tolerate, f"{spec}: {pre.stderr}"

    status = subscriber(broker, "presence/v1/store-042/gw-entrance/status")
    [start] = directives(unit, "ExecStart")
    proc = subprocess.Popen(shlex.split(start), cwd="/", env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        online = status.wait_for(1, 30)
        assert online and b'"online"' in online[-1][1], proc.stderr.read() if proc.poll() else ""
        assert proc.poll() is None, "the service must keep running without its radios"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "interface_missing" in err and "bluez_not_running" in err  # each radio said why
    assert "Traceback" not in err
    assert (state / "gateway.db").exists() and not (etc / "var").exists()
    offline = status.wait_for(2, 10)
    assert b'"offline"' in offline[-1][1] or b"offline" in offline[-1][1]
