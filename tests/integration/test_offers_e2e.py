"""In-store offers, end to end on real SQLite and a real Mosquitto.

- `presence-gateway replay` twice on one --db: the offers fire on MQTT with the contract's
  shape, and the per-customer daily cap, kept in `offer_ledger`, survives the restart.
- `presence-gateway offers simulate` on the same data and registry.
- Reload while running: a signed `offers.reload` command (ok, rejected rules, bad HMAC), the
  in-process SIGHUP path, and SIGHUP/SIGTERM sent to a real `presence-gateway run` process.

Known truth: alice (gold, consent offers) stays 10 minutes at 10:00 and again at 12:00 on a
Monday; bob (gold, analytics only) and frank (silver, offers) stay alongside and never qualify.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.commands import sign
from presence_gateway.core.config import load_config
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.contract import validate_event
from tests.integration import e2e_data as d
from tests.integration.test_identity_e2e import (
    GateThenDeliver,
    cli,
    mqtt_publish,
    sightings_of,
    until,
)
from tests.mqtt_helpers import Collector

OFFER = "presence.offer.triggered"
RULES_V1 = """\
version: e2e-1
offers:
  - id: gold-3m-daily
    description: Gold customers who stay 3 minutes, once a day
    when:
      zone: store
      dwell_at_least: 3m
      segment: {tier: [gold, platinum]}
      days: [mon, tue, wed, thu, fri]
      hours: "09:00-20:00"
    limits:
      cooldown: 1h
      per_customer: {day: 1, week: 3}
      global_per_hour: 200
      max_per_visit: 1
    payload: {campaign: SHOES10, channel: app_push}
  - id: gold-5m
    description: Gold customers at 5 minutes, every visit
    when: {zone: store, dwell_at_least: 5m, segment: {tier: gold}}
    limits: {cooldown: 30m}
    payload: {campaign: STAY5}
"""
RULES_V2 = """\
version: e2e-2
offers:
  - id: gold-welcome
    description: Gold customers, as they come in
    when: {zone: store, segment: {tier: gold}}
    payload: {campaign: HELLO, channel: app_push}
"""
RULES_BAD = """\
version: e2e-bad
offers:
  - id: shoes-typo
    description: a zone this gateway does not have and a bad duration
    when: {zone: shoes, dwell_at_least: 3 minutes}
"""
RULES_V3 = RULES_V2.replace("e2e-2", "e2e-3").replace("gold-welcome", "gold-hello")
SUMMARY = re.compile(r"(\S+): fired (\d+)")


def setup(tmp: Path, broker: LocalBroker, drivers: str = "") -> tuple[Path, Path, Path]:
    db, rules = tmp / "gw.db", tmp / "offers.yaml"
    rules.write_text(RULES_V1)
    cfg = d.gateway_yaml(tmp / "gateway.yaml", db=db, broker_url=broker.url, rules=rules,
                         drivers=drivers)
    (tmp / "customers.csv").write_text(d.identities_csv(["alice", "bob", "erin", "frank"]))
    imp = cli("identities", "import", str(tmp / "customers.csv"), "-c", str(cfg))
    assert imp.returncode == 0, imp.stderr
    return cfg, db, rules


def ledger(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return [(r[0], r[1]) for r in con.execute(
            "SELECT offer_id, customer_id FROM offer_ledger ORDER BY ts, n")]
    finally:
        con.close()


def replay(cfg: Path, db: Path, broker: LocalBroker, capture: Path) -> list[dict[str, Any]]:
    """`presence-gateway replay` as a process; returns the offers that reached the broker."""
    topic = "presence/v1/s1/gw1/events/" + OFFER
    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/events/#") as sub:
        out = capture.with_suffix(".events.jsonl")
        proc = cli("replay", str(capture), "-c", str(cfg), "--db", str(db), "--events-out",
                   str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        sent = [json.loads(x) for x in out.read_bytes().splitlines()]
        # Retained state (occupancy) lives outside events/: only its last value is kept.
        want = {e["id"] for e in sent if "/events/" in e["topic"]}
        assert not sub.wait_for_ids(want, timeout=15)
        offers = [orjson.loads(p) for t, p, _ in sub.snapshot() if t == topic]
    linked = {e["data"]["visit_id"]: e["data"]["customer_id"] for e in sent
              if e["type"] == "presence.identity.linked"}
    for o in offers:
        validate_event(o)
        assert linked[o["data"]["visit_id"]] == o["data"]["customer_id"]
    return offers


def test_offers_fire_on_mqtt_and_daily_cap_survives_a_restart(tmp_path: Path,
                                                              mosquitto: Any) -> None:
    broker = mosquitto()
    cfg, db, rules = setup(tmp_path, broker)
    first, second = tmp_path / "morning.jsonl", tmp_path / "noon.jsonl"
    first.write_text(d.ble_recording(["alice", "bob", "frank"], d.T0, 10))
    second.write_text(d.ble_recording(["alice", "bob", "frank"], d.T0 + 2 * 3600, 10))
    alice = d.PEOPLE["alice"].customer

    offers = replay(cfg, db, broker, first)
    assert [(o["data"]["offer_id"], o["data"]["customer_id"]) for o in offers] == [
        ("gold-3m-daily", alice), ("gold-5m", alice)]
    data = offers[0]["data"]
    assert data["payload"] == {"campaign": "SHOES10", "channel": "app_push"}
    assert data["zone"] == "store" and data["rules_version"] == "e2e-1"
    reason = data["reason"]
    assert (reason["trigger"], reason["dwell_s"], reason["segment"], reason["day"],
            reason["hours"], reason["consent"]) == (
        "dwell", 180.0, {"tier": "gold"}, "mon", "09:00-20:00", "offers")
    assert reason["local_time"].startswith("2025-06-02T10:03:")
    assert offers[1]["data"]["visit_id"] == data["visit_id"]
    assert ledger(db) == [("gold-3m-daily", alice), ("gold-5m", alice)]

    # A new process on the same file, two hours later the same day: the daily cap holds.
    offers = replay(cfg, db, broker, second)
    assert [(o["data"]["offer_id"], o["data"]["customer_id"]) for o in offers] == [
        ("gold-5m", alice)]
    assert offers[0]["data"]["visit_id"] != data["visit_id"]
    assert ledger(db) == [("gold-3m-daily", alice), ("gold-5m", alice), ("gold-5m", alice)]

    # The marketer's dry run on the same data: simulate starts with empty caps, and must not
    # touch the live ledger.
    sim = cli("offers", "simulate", str(rules), str(first), str(second), "--db", str(db),
              "-c", str(cfg))
    assert sim.returncode == 0, sim.stderr
    fired = [json.loads(x)["data"] for x in sim.stdout.splitlines()]
    assert [(f["offer_id"], f["customer_id"]) for f in fired] == [
        ("gold-3m-daily", alice), ("gold-5m", alice), ("gold-5m", alice)]
    assert all(f["visit_id"] and f["reason"]["trigger"] == "dwell" for f in fired)
    assert dict(SUMMARY.findall(sim.stderr)) == {"gold-3m-daily": "1", "gold-5m": "2"}
    assert "per_customer_day" in sim.stderr
    assert len(ledger(db)) == 3


# -- reload while running ---------------------------------------------------------------------

def command(rules: str, version: str, *, key: str = d.COMMAND_KEY) -> tuple[str, bytes]:
    cid = uuid.uuid4().hex
    body = {"command": "offers.reload", "target": "s1/gw1", "id": cid,
            "issued_at": int(time.time()), "version": version, "rules": rules}
    return cid, sign(key.encode(), body)


def results(sub: Collector) -> list[dict[str, Any]]:
    return [orjson.loads(p) for t, p, _ in sub.snapshot()
            if t == "presence/v1/s1/gw1/commands/offers.reload/result"]


def alice_walks_in(tmp: Path) -> list[Any]:
    now = time.time()
    path = tmp / "alice-now.jsonl"
    path.write_text(d.ble_recording(["alice"], now - 12, 0.2, step=1.0))
    return sightings_of(path)


def test_reload_by_command_and_sighup_in_a_live_service(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    cfg_path, _, rules_path = setup(tmp_path, broker)
    cfg = load_config(str(cfg_path), env=d.ENV)
    adverts = alice_walks_in(tmp_path)
    topic = "presence/v1/s1/gw1/commands/offers.reload"

    async def scenario(sub: Collector) -> dict[str, Any]:
        gate = asyncio.Event()
        svc = Service(cfg, RunOptions(mode=Mode.LIVE), [GateThenDeliver(adverts, gate)])
        task = asyncio.create_task(svc.run())
        await until(lambda: any(t.endswith("/status") for t, _, _ in sub.snapshot()))
        assert svc.runtime is not None and svc.runtime.core.offers is not None
        engine, control = svc.runtime.core.offers, svc.runtime.control
        ids: dict[str, Any] = {"start": [r.id for r in engine.rules.rules]}

        async def send(payload: bytes, n: int) -> dict[str, Any]:
            await asyncio.to_thread(mqtt_publish, broker, topic, payload)
            await until(lambda: len(results(sub)) >= n)
            return results(sub)[n - 1]

        good_id, good = command(RULES_V2, "e2e-2")
        ids["ok"] = await send(good, 1), good_id, [r.id for r in engine.rules.rules]
        gate.set()  # alice walks in: only the NEW rule can fire within seconds
        await until(lambda: any(e["type"] == OFFER for e in sub.events()), 15)
        bad_id, bad = command(RULES_BAD, "e2e-bad")
        ids["bad"] = await send(bad, 2), bad_id, [r.id for r in engine.rules.rules]
        _, forged = command(RULES_V1, "e2e-forged", key="not-the-key-0123456789abcdef")
        ids["forged"] = await send(forged, 3), None, [r.id for r in engine.rules.rules]
        rules_path.write_text(RULES_V3)
        control.sighup()
        await until(lambda: len(results(sub)) >= 4)
        ids["sighup"] = results(sub)[3], None, [r.id for r in engine.rules.rules]
        svc.stop_event.set()
        await task
        return ids

    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub:
        got = asyncio.run(scenario(sub))
        offers = [e for e in sub.events() if e["type"] == OFFER]
    assert got["start"] == ["gold-3m-daily", "gold-5m"]
    ok, cid, rules_now = got["ok"]
    validate_event(ok)
    assert ok["type"] == "presence.command.result" and ok["subject"] == cid
    assert {k: ok["data"][k] for k in ("command", "id", "ok", "version", "rules")} == {
        "command": "offers.reload", "id": cid, "ok": True, "version": "e2e-2", "rules": 1}
    assert rules_now == ["gold-welcome"]
    assert [(o["data"]["offer_id"], o["data"]["customer_id"], o["data"]["reason"]["trigger"])
            for o in offers] == [("gold-welcome", d.PEOPLE["alice"].customer, "zone_entered")]
    bad, cid, rules_now = got["bad"]
    validate_event(bad)
    assert (bad["data"]["ok"], bad["data"]["id"]) == (False, cid)
    errors = bad["data"]["errors"]
    assert len(errors) == 2 and rules_now == ["gold-welcome"]  # the old rules keep running
    assert re.search(r":5 offers\[0\]\.when\.zone \(shoes-typo\): unknown zone \"shoes\"",
                     errors[0]), errors
    assert re.search(r":5 offers\[0\]\.when\.dwell_at_least \(shoes-typo\)", errors[1]), errors
    forged, _, rules_now = got["forged"]
    validate_event(forged)
    assert forged["type"] == "presence.command.rejected"
    assert (forged["data"]["ok"], forged["data"]["reason"]) == (False, "bad_signature")
    assert rules_now == ["gold-welcome"]
    hup, _, rules_now = got["sighup"]
    validate_event(hup)
    assert (hup["data"]["ok"], hup["data"]["id"], hup["data"]["version"]) == (True, None, "e2e-3")
    assert rules_now == ["gold-hello"]


def test_sighup_and_sigterm_to_a_running_gateway_process(tmp_path: Path,
                                                         mosquitto: Any) -> None:
    broker = mosquitto()
    cfg, _, rules = setup(tmp_path, broker, drivers="drivers: [{type: fake, name: idle}]\n")
    log = tmp_path / "gateway.log"
    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub, \
            log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "presence_gateway", "run", "-c", str(cfg)],
                                stdout=err, stderr=err, cwd=d.ROOT, env=d.env())
        try:
            assert _wait(lambda: _status(sub) == "online", 20), log.read_text()
            rules.write_text(RULES_V2)
            proc.send_signal(signal.SIGHUP)
            assert _wait(lambda: len(results(sub)) >= 1, 10), log.read_text()
            rules.write_text(RULES_BAD)
            proc.send_signal(signal.SIGHUP)
            assert _wait(lambda: len(results(sub)) >= 2, 10), log.read_text()
            assert proc.poll() is None, "SIGHUP must not stop the gateway"
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        first, second = results(sub)
    text = log.read_text()
    assert rc == 0, text
    assert "SIGHUP: offer rules reloaded" in text
    assert "SIGHUP: offer rules rejected, old rules kept" in text
    assert (first["data"]["ok"], first["data"]["version"], first["data"]["rules"]) == (
        True, "e2e-2", 1)
    assert second["data"]["ok"] is False and "shoes-typo" in second["data"]["errors"][0]
    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/status") as late:
        assert _wait(lambda: bool(late.snapshot()), 5)
        _, payload, retained = late.snapshot()[0]
    assert retained and orjson.loads(payload)["state"] == "offline"


def _status(sub: Collector) -> str | None:
    states = [orjson.loads(p)["state"] for t, p, _ in sub.snapshot() if t.endswith("/status")]
    return states[-1] if states else None


def _wait(cond: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False
