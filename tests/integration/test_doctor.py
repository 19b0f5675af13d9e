"""`presence-gateway doctor` reports what is wrong, with what to do, and exits non-zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker, free_port
from presence_gateway.cli.doctor import run_doctor


def doctor(text: str, tmp_path: Path) -> tuple[int, list[str]]:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(text)
    lines: list[str] = []
    return run_doctor(str(cfg), lines.append), lines


def test_healthy_replay_setup(tmp_path: Path, local_broker: LocalBroker) -> None:
    pcap = Path(__file__).resolve().parents[2] / "gateway/data/demo/wifi_tcpdump_exthdr.pcap"
    (tmp_path / "secret").write_text("s" * 32)
    rc, lines = doctor(f"mqtt: {{url: '{local_broker.url}'}}\n"
                       f"storage: {{path: '{tmp_path}/g.db'}}\n"
                       f"drivers: [{{type: wifi_pcap, paths: ['{pcap}']}}]\n"
                       f"privacy: {{secret: 'file:{tmp_path}/secret'}}\n", tmp_path)
    assert rc == 0, lines
    assert any(line.startswith("ok    broker") and "answers MQTT" in line for line in lines)
    # pure Python (this suite's build) is a warning that names the compiled wheel, not a
    # failure (tests/test_compiled.py checks the compiled build's line)
    code = [line for line in lines if " code " in line]
    assert code and code[0].startswith("warn") and "make wheel" in code[0], lines


def test_broken_setup_names_each_problem(tmp_path: Path) -> None:
    rc, lines = doctor(f"mqtt: {{port: {free_port()}}}\n"
                       "drivers: [{type: wifi_monitor, interface: wlan9mon},"
                       " {type: ble_replay, paths: [/nonexistent.jsonl]}]\n", tmp_path)
    assert rc == 1
    text = "\n".join(lines)
    assert "FAIL  broker" in text and "broker down or wrong port" in text
    assert "interface wlan9mon not found" in text
    assert "missing capture file(s): /nonexistent.jsonl" in text
    assert "warn  privacy" in text


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    rc, lines = doctor("mqtt: {port: x}\n", tmp_path)
    assert rc == 2 and "mqtt.port" in lines[0]


def test_without_a_config_it_checks_what_run_would_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` without a drivers section scans BLE on hci0: doctor must check that radio, not
    claim that only `replay` would work."""
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    run_doctor(None, lines.append)
    driver = [line for line in lines if " driver " in line]
    assert driver and "ble_bleak" in driver[0], lines
    assert not any("replay" in line for line in lines), lines
