"""`presence-gateway offers check|simulate` end to end on a scripted BLE recording.

The recording (JSONL, docs/ble_recording.md) holds two app iBeacons of registered customers and
one anonymous phone; the registry comes from an import file or a real SQLite registry.
Known truth: Alice (gold, consent `offers`) stays 10 minutes -> exactly one offer at the
3-minute mark; Bob (gold, consent `analytics` only) stays as long -> suppressed `no_consent`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from presence_gateway.adapters.identity_store import Registry
from presence_gateway.cli.main import main as cli
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.privacy import Pseudonymizer

ROOT = Path(__file__).resolve().parents[1]
APP_UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
SECRET = "simulate-test-secret-0123456789"
T0 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()  # Monday
RULES = """\
version: sim-1
offers:
  - id: store-gold-3m
    description: Gold customers who stay 3 minutes
    when:
      zone: store
      dwell_at_least: 3m
      segment: {tier: gold}
      hours: "09:00-20:00"
    limits: {cooldown: 1h, max_per_visit: 1}
    payload: {campaign: GOLD3, channel: app_push}
  - id: evening-only
    description: never fires in the morning
    when: {zone: store, hours: "18:00-22:00"}
"""
IDENTITIES = f"""\
customer_id,kind,value,consent,segments
alice,ibeacon,{APP_UUID}/1/2,offers personalization,tier=gold
bob,ibeacon,{APP_UUID}/1/3,analytics,tier=gold
"""


def main(argv: list[str]) -> int:
    return cli(["offers", *argv])


def ibeacon(major: int, minor: int) -> str:
    return "0215" + APP_UUID.replace("-", "") + f"{major:04x}{minor:04x}" + "c5"


def recording() -> str:
    lines = []
    for i in range(0, 600, 5):  # 10 minutes, one advert every 5 s each
        t = T0 + i
        lines.append({"ts": t, "address": "c1:11:22:33:44:55", "address_type": "random",
                      "rssi": -58, "manufacturer_data": {"76": ibeacon(1, 2)}, "channel": 37})
        lines.append({"ts": t + 1, "address": "c2:11:22:33:44:66", "address_type": "random",
                      "rssi": -60, "manufacturer_data": {"76": ibeacon(1, 3)}, "channel": 38})
        lines.append({"ts": t + 2, "address": "c3:11:22:33:44:77", "address_type": "random",
                      "rssi": -62, "manufacturer_data": {"76": ibeacon(9, 9)}, "channel": 39})
    return "".join(json.dumps(x) + "\n" for x in lines)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return write_files(tmp_path)


def write_files(tmp_path: Path) -> dict[str, Path]:
    """The scripted visit, rules, registry import and config (also used by the dashboard's
    campaign test, which shows this simulation's report)."""
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    out = {
        "config": tmp_path / "gateway.yaml", "rules": tmp_path / "offers.yaml",
        "capture": tmp_path / "visit.jsonl", "identities": tmp_path / "customers.csv",
        "db": tmp_path / "registry.db",
    }
    out["config"].write_text(f"store: {{id: s1, timezone: Europe/Berlin}}\n"
                             f"gateway: {{id: gw1}}\nprivacy: {{secret: 'file:{secret}'}}\n")
    out["rules"].write_text(RULES)
    out["capture"].write_text(recording())
    out["identities"].write_text(IDENTITIES)
    return out


def check_output(stdout: str, stderr: str) -> None:
    lines = [json.loads(x) for x in stdout.splitlines()]
    assert len(lines) == 1, stderr
    ev = lines[0]
    assert ev["type"] == "presence.offer.triggered" and ev["specversion"] == "1.0"
    d = ev["data"]
    assert (d["offer_id"], d["customer_id"]) == ("store-gold-3m", "alice")
    assert d["visit_id"] and d["payload"] == {"campaign": "GOLD3", "channel": "app_push"}
    assert d["reason"]["segment"] == {"tier": "gold"} and d["reason"]["dwell_s"] == 180.0
    assert d["reason"]["hours"] == "09:00-20:00"
    assert "store-gold-3m: fired 1" in stderr
    assert "suppressed 1 x no_consent" in stderr
    assert "evening-only: fired 0" in stderr and "outside_hours" in stderr
    for raw in ("c1:11:22:33:44:55", "c2:11:22:33:44:66", APP_UUID.replace("-", "")):
        assert raw not in stdout and raw not in stderr


def test_simulate_with_an_import_file(files: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", str(files["rules"]), str(files["capture"]), "-c",
               str(files["config"]), "--identities", str(files["identities"])])
    out, err = capsys.readouterr()
    assert rc == 0, err
    check_output(out, err)


def test_simulate_with_a_sqlite_registry_through_the_cli(files: dict[str, Path]) -> None:
    hasher = Pseudonymizer(SECRET.encode()).stable_hash
    result = parse_import(IDENTITIES, "customers.csv", hasher)

    async def seed() -> None:
        async with await Registry.open(str(files["db"])) as reg:
            await reg.import_entries(result.entries, hasher, T0)
    asyncio.run(seed())
    proc = subprocess.run(
        [sys.executable, "-m", "presence_gateway", "offers", "simulate", str(files["rules"]),
         str(files["capture"]), "--db", str(files["db"]), "-c", str(files["config"])],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    check_output(proc.stdout, proc.stderr)


def test_rules_with_errors_exit_2_with_every_message(files: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    files["rules"].write_text(RULES.replace("zone: store\n      dwell", "zone: shoes\n      dwell")
                              .replace("cooldown: 1h", "cooldown: soon"))
    rc = main(["simulate", str(files["rules"]), str(files["capture"]), "-c",
               str(files["config"]), "--identities", str(files["identities"])])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        'offers.yaml:6 offers[0].when.zone (store-gold-3m): unknown zone "shoes" (known zones:'
        " store)",
        'offers.yaml:10 offers[0].limits.cooldown (store-gold-3m): expected a duration such as'
        ' 30s, 5m, 2h (at least 0s), got "soon"']
    rc = main(["check", str(files["rules"]), "-c", str(files["config"])])
    assert rc == 2 and len(capsys.readouterr().err.splitlines()) == 2


def test_check_ok_and_the_shipped_example(files: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(files["rules"]), "-c", str(files["config"])]) == 0
    assert "2 rule(s), 2 enabled, version sim-1" in capsys.readouterr().err
    assert main(["check", str(ROOT / "config" / "offers.example.yaml")]) == 0
    assert "zone names not checked" in capsys.readouterr().err
    assert main(["check"]) == 2


def test_simulate_report_says_why_each_rule_did_not_fire(
        files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "sim.json"
    rc = main(["simulate", str(files["rules"]), str(files["capture"]), "-c",
               str(files["config"]), "--identities", str(files["identities"]),
               "--report", str(report)])
    assert rc == 0, capsys.readouterr().err
    import orjson
    body = orjson.loads(report.read_bytes())
    rules = {r["id"]: r for r in body["rules"]}
    assert rules["store-gold-3m"]["fired"] == 1
    assert rules["store-gold-3m"]["not_fired_because"] == {"no_consent": 1}
    assert rules["evening-only"]["fired"] == 0
    assert "outside_hours" in rules["evening-only"]["not_fired_because"]
    assert body["day"] and body["store"] and body["visits_linked"] >= 1
    assert "c1:11:22:33:44:55" not in report.read_text()
