"""`-v` must not write secrets to the log.

aiosqlite's debug lines print every SQL call with its values: with the old `-v` (root logger
at DEBUG) a replay over a registry wrote IRKs, app secrets and customer ids to stderr, i.e.
to the journal. Now libraries stay at INFO unless named with `--debug-logger`.

Real processes: `identities import -v` and `replay -v` of scripted visits (IRK, app token,
Eddystone-EID, Wi-Fi customers: tests/integration/e2e_data.py) into a real Mosquitto that
requires a password, given by `env:`. Every byte either process writes is scanned; the same
scan over `--debug-logger aiosqlite` (what the old `-v` printed) finds the secrets.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration import e2e_data as d

MQTT_USER, MQTT_PASSWORD = "gw-e2e", "mqtt-pw-7Qx2-never-in-logs"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**d.env(), "PG_MQTT_PASSWORD": MQTT_PASSWORD}
    return subprocess.run([sys.executable, "-m", "presence_gateway", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=d.ROOT, env=env)


def secret_forms(hex_text: str) -> list[str]:
    raw = bytes.fromhex(hex_text)
    return [hex_text.lower(), hex_text.upper(), repr(raw)[2:-1], base64.b64encode(raw).decode(),
            raw[::-1].hex()]


def needles() -> dict[str, str]:
    keys = {d.ALICE_SECRET: "alice's app secret", d.CAROL_IRK: "carol's IRK",
            d.ERIN_IRK: "erin's IRK", d.FRANK_EID_KEY: "frank's EID key"}
    found = {form: what for k, what in keys.items() for form in secret_forms(k)}
    found.update({p.customer: f"customer id of {n}" for n, p in d.PEOPLE.items()})
    found.update({d.SECRET: "privacy secret", d.SYNC_KEY: "identity sync key",
                  MQTT_PASSWORD: "MQTT password"})
    return found


def setup(tmp: Path, broker: Any) -> tuple[Path, list[str]]:
    db = tmp / "gw.db"
    mqtt = (f"mqtt: {{url: 'mqtt://{MQTT_USER}@{broker.host}:{broker.port}',"
            " password: env:PG_MQTT_PASSWORD}\n")
    cfg = d.gateway_yaml(tmp / "gateway.yaml", db=db, extra=mqtt)
    (tmp / "customers.csv").write_text(d.identities_csv())
    ble = tmp / "visit.jsonl"
    ble.write_text(d.ble_recording(["alice", "carol", "erin", "frank", "anon"], d.T0, 10))
    wifi = tmp / "dan.pcap"
    d.wifi_probes(wifi, d.DAN_MAC, d.T0, 10)
    return cfg, [str(ble), str(wifi)]


def test_verbose_import_and_replay_log_no_secret(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto(users={MQTT_USER: MQTT_PASSWORD})
    cfg, inputs = setup(tmp_path, broker)
    imp = cli("-v", "identities", "import", str(tmp_path / "customers.csv"), "-c", str(cfg))
    assert imp.returncode == 0, imp.stderr
    rep = cli("-v", "replay", *inputs, "-c", str(cfg),
              "--events-out", str(tmp_path / "events.jsonl"))
    assert rep.returncode == 0, rep.stderr[-3000:]
    logs = imp.stdout + imp.stderr + rep.stdout + rep.stderr
    # The run is the real thing: identities linked, delivered through the password.
    events = (tmp_path / "events.jsonl").read_text()
    assert d.PEOPLE["erin"].customer in events and d.PEOPLE["alice"].customer in events
    assert f"delivered {events.count(chr(10))} messages" in rep.stderr
    leaked = sorted({what for needle, what in needles().items() if needle in logs})
    assert not leaked, f"in the -v logs: {leaked}"
    assert " DEBUG aiosqlite" not in logs and " DEBUG asyncio" not in logs


def test_a_library_debug_log_only_when_asked_for_by_name(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto(users={MQTT_USER: MQTT_PASSWORD})
    cfg, _ = setup(tmp_path, broker)
    out = cli("--debug-logger", "aiosqlite", "identities", "import",
              str(tmp_path / "customers.csv"), "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    assert " DEBUG aiosqlite: executing" in out.stderr
    # What the old -v wrote (every library at DEBUG), and what the scan above would catch:
    leaked = {what for needle, what in needles().items() if needle in out.stderr}
    assert "erin's IRK" in leaked and "customer id of erin" in leaked, leaked
