"""Config validation: every error names file, key and line; good files give frozen settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from presence_gateway.core.config import load_config, mqtt_from_url, parse_config
from presence_gateway.errors import ConfigError, ConfigErrors


def errors_of(text: str, env: dict[str, str] | None = None) -> list[ConfigError]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        parse_config(text, "/etc/pg/gateway.yaml", env=env or {})
    exc = info.value
    return exc.errors if isinstance(exc, ConfigErrors) else [exc]


def test_defaults_are_complete_and_frozen() -> None:
    cfg = load_config(None)
    assert cfg.store_id == "store-1" and cfg.gateway_id == "gw-1"
    assert cfg.mqtt.port == 1883 and cfg.mqtt.qos == 1 and cfg.mqtt.topic_prefix == "presence"
    assert len(cfg.privacy.secret) == 32  # random, in RAM only
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.port = 1  # type: ignore[misc]


def test_example_config_is_valid() -> None:
    env = {"PG_SECRET": "x" * 32, "MQTT_PASSWORD": "pw", "PG_SYNC_KEY": "k" * 20,
           "PG_COMMAND_KEY": "c" * 20}
    cfg = load_config("config/gateway.example.yaml", env=env)
    assert cfg.drivers and cfg.store_id


def test_port_error_names_file_key_line() -> None:
    [err] = errors_of("store:\n  id: s1\nmqtt:\n  host: broker\n  port: abc\n")
    assert str(err) == 'gateway.yaml:5 mqtt.port: expected an integer 1..65535, got "abc"'


@pytest.mark.parametrize(("text", "key", "line", "fragment"), [
    ("mqtt:\n  port: 70000\n", "mqtt.port", 2, "1..65535"),
    ("mqtt:\n  qos: 3\n", "mqtt.qos", 2, "0..2"),
    ("mqtt:\n  hots: x\n", "mqtt.hots", 2, "unknown key"),
    ("storez: {}\n", "storez", 1, "unknown key"),
    ("store:\n  id: 'bad id!'\n", "store.id", 2, "matching"),
    ("store:\n  timezone: Mars/Olympus\n", "store.timezone", 2, "unknown time zone"),
    ("privacy:\n  secret: env:PG_NOPE\n", "privacy.secret", 2, "PG_NOPE is not set"),
    ("privacy:\n  rotation: soon\n", "privacy.rotation", 2, "duration"),
    ("drivers:\n  - type: wifi_pcap\n", "drivers[0].paths", 2, "non-empty list"),
    ("drivers:\n  - type: laser\n", "drivers[0].type", 2, "expected one of"),
    ("drivers:\n  - {type: wifi_monitor, interface: wlan1, channels: [0]}\n",
     "drivers[0].channels", 2, "channel"),
    ("mqtt:\n  tls: {ca_file: /nonexistent/ca.pem}\n", "mqtt.tls.ca_file", 2, "not found"),
    ("mqtt:\n  url: http://x\n", "mqtt.url", 2, "mqtt://"),
    ("storage:\n  batch_max: 0\n", "storage.batch_max", 2, "integer"),
])
def test_bad_values_are_reported(text: str, key: str, line: int, fragment: str) -> None:
    errs = errors_of(text)
    match = [e for e in errs if e.key == key]
    assert match, [str(e) for e in errs]
    assert match[0].line == line and fragment in match[0].message
    assert str(match[0]).startswith(f"gateway.yaml:{line} {key}: ")


def test_every_error_of_a_file_is_reported_at_once() -> None:
    errs = errors_of("mqtt:\n  port: x\n  qos: 9\nstore:\n  id: ''\n")
    assert [e.key for e in errs] == ["mqtt.port", "mqtt.qos", "store.id"]


def test_invalid_yaml_names_the_line() -> None:
    [err] = errors_of("mqtt:\n  port: 1883\n   host: [\n")
    assert err.line is not None and "not valid YAML" in err.message


def test_secrets_come_from_env_or_file(tmp_path: object) -> None:
    from pathlib import Path
    secret_file = Path(str(tmp_path)) / "secret"
    secret_file.write_text("s" * 40 + "\n")
    cfg = parse_config(f"privacy:\n  secret: file:{secret_file}\nmqtt:\n  password: env:PW\n",
                       "g.yaml", env={"PW": "hunter2"})
    assert cfg.privacy.secret == b"s" * 40
    assert cfg.mqtt.password == "hunter2"
    assert "hunter2" not in repr(cfg.mqtt)


def test_mqtt_url() -> None:
    m = mqtt_from_url("mqtts://us%40er@broker.local")
    assert (m.host, m.port, m.tls, m.username, m.password) == (
        "broker.local", 8883, True, "us@er", None)
    assert mqtt_from_url("mqtt://127.0.0.1:1999").port == 1999
    with pytest.raises(ValueError):
        mqtt_from_url("tcp://x:1")
    # A password never comes from a URL (it would show in `ps`), nor is it repeated.
    for url in ("mqtts://user:p%40ss@broker.local", "mqtt://user:@h", "tcp://u:p@", "mqtt://u:p@h:x"):
        with pytest.raises(ValueError, match="password in the URL is refused") as err:
            mqtt_from_url(url)
        assert "p%40ss" not in str(err.value) and "u:p" not in str(err.value)


def test_driver_options_become_typed_settings_once() -> None:
    from presence_gateway.core.driver_config import (
        BleakSettings,
        DriverType,
        RecordingSettings,
        WifiMonitorSettings,
    )
    cfg = parse_config(
        "drivers:\n"
        "  - {type: wifi_monitor, interface: wlan1mon, channels: all, sensor: door}\n"
        "  - {type: wifi_monitor, name: w2, interface: wlan2mon}\n"
        "  - {type: ble_bleak, mode: passive, watchdog: 2m}\n"
        "  - {type: ble_replay, paths: [a.jsonl]}\n", "t.yaml")
    mon, mon2, ble, rec = cfg.drivers
    assert isinstance(mon, WifiMonitorSettings) and mon.channels is None and mon.sensor == "door"
    assert isinstance(mon2, WifiMonitorSettings) and mon2.channels == (1, 6, 11)
    assert mon2.dwell_s == 0.25 and mon2.name == "w2"
    assert isinstance(ble, BleakSettings) and (ble.mode, ble.watchdog_s, ble.adapter) == (
        "passive", 120.0, "hci0")
    assert ble.bluetoothd_restart == ("systemctl", "restart", "bluetooth")
    assert isinstance(rec, RecordingSettings) and rec.paths == (str(Path("a.jsonl").absolute()),)
    assert rec.type is DriverType.BLE_REPLAY and rec.type.is_recording
    assert not ble.type.is_recording


@pytest.mark.parametrize(("value", "command"), [
    ("'sudo -n systemctl restart bluetooth'", ("sudo", "-n", "systemctl", "restart", "bluetooth")),
    ("[/usr/local/bin/bt-reset, \"hci 0\"]", ("/usr/local/bin/bt-reset", "hci 0")),
    ("false", ()),
    ("''", ()),
])
def test_bluetoothd_restart_command(value: str, command: tuple[str, ...]) -> None:
    cfg = parse_config(f"drivers:\n  - {{type: ble_bleak, bluetoothd_restart: {value}}}\n",
                       "t.yaml")
    assert cfg.drivers[0].bluetoothd_restart == command  # type: ignore[attr-defined]
    [err] = errors_of("drivers:\n  - {type: ble_bleak, bluetoothd_restart: 3}\n")
    assert "drivers[0].bluetoothd_restart" in str(err)


def test_driver_option_errors_name_the_key() -> None:
    with pytest.raises(ConfigErrors) as exc:
        parse_config("drivers:\n  - {type: wifi_monitor, interface: wlan1mon, channels: [0]}\n"
                     "  - {type: ble_bleak, speed: 3}\n", "t.yaml")
    text = str(exc.value)
    assert "t.yaml:2 drivers[0].channels" in text and "drivers[1].speed" in text


def test_relative_paths_resolve_beside_the_config_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A config in /etc/presence-gateway must mean the same from any working directory
    (systemd starts in /): relative paths in the file are relative to the file."""
    etc = tmp_path / "etc" / "pg"
    etc.mkdir(parents=True)
    (etc / "offers.yaml").write_text("offers: []\n")
    (etc / "pw").write_text("s3cret\n")
    (etc / "cap.jsonl").write_text("")
    (etc / "gateway.yaml").write_text(
        "storage:\n  path: state/g.db\noffers:\n  rules: offers.yaml\n"
        "mqtt:\n  username: u\n  password: file:pw\n"
        "drivers:\n  - type: ble_replay\n    paths: [cap.jsonl, /abs/other.jsonl]\n")
    monkeypatch.chdir("/")
    cfg = load_config(str(etc / "gateway.yaml"))
    assert cfg.storage.path == str(etc / "state" / "g.db")
    assert cfg.offers.rules_path == str(etc / "offers.yaml")
    assert cfg.mqtt.password == "s3cret"
    assert cfg.drivers[0].paths == (str(etc / "cap.jsonl"), "/abs/other.jsonl")  # type: ignore[union-attr]
    # Not written in the file: the built-in default is unchanged (relative to the cwd).
    (etc / "bare.yaml").write_text("store:\n  id: s1\n")
    assert load_config(str(etc / "bare.yaml")).storage.path == "var/presence-gateway.db"


def test_the_example_config_checks_from_any_directory(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    example = Path(__file__).resolve().parents[2] / "config" / "gateway.example.yaml"
    monkeypatch.chdir("/")
    env = {"PG_SECRET": "x" * 32, "MQTT_PASSWORD": "pw", "PG_SYNC_KEY": "k" * 20,
           "PG_COMMAND_KEY": "c" * 20}
    cfg = load_config(str(example), env=env)
    assert cfg.offers.rules_path == str(example.parent / "offers.example.yaml")
    assert Path(cfg.offers.rules_path).is_file()


def test_storage_disk_budget_and_resend_window() -> None:
    default = parse_config("", "<defaults>", env={}).storage
    assert (default.max_bytes, default.min_free_bytes) == (1 << 30, 64 << 20)
    assert (default.keep_delivered_s, default.keep_delivered_bytes) == (86400.0, 64 << 20)
    s = parse_config("storage: {max_bytes: 512MB, min_free_bytes: 100MiB, keep_delivered: 2h,"
                     " keep_delivered_bytes: 1000}\n", "g.yaml", env={}).storage
    assert (s.max_bytes, s.min_free_bytes, s.keep_delivered_s, s.keep_delivered_bytes) == (
        512_000_000, 100 << 20, 7200.0, 1000)
    assert parse_config("storage: {keep_delivered: 0, max_bytes: 0}\n", "g.yaml",
                        env={}).storage.keep_delivered_s == 0.0
    with pytest.raises(ConfigErrors) as err:
        parse_config("storage:\n  max_bytes: lots\n  min_free_bytes: -5\n"
                     "  keep_delivered: 10s\n", "g.yaml", env={})
    text = str(err.value)
    assert "g.yaml:2 storage.max_bytes" in text and "storage.min_free_bytes" in text
    assert "storage.keep_delivered" in text
