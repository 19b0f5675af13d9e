"""Identity linking with consent, end to end through the in-process Service: daily key
rotation and retention (real SQLite, real Mosquitto), and the registry kept in sync from central
over live MQTT (the CLI import -> `presence-gateway replay` run and its privacy scan:
test_identity_replay.py).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.config import load_config
from presence_gateway.core.identity.sync import sign as sync_sign
from presence_gateway.core.identity.sync import topics as sync_topics
from presence_gateway.core.model import OutboundMessage, Rejection, Sighting
from presence_gateway.drivers.ble_replay import BleReplayDriver
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.contract import validate_event
from tests.integration import e2e_data as d
from tests.mqtt_helpers import Collector

LINKED = "presence.identity.linked"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "presence_gateway", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=d.ROOT, env=d.env())


# -- rotation and retention through the in-process service ----------------------------------

class Recorder:
    def __init__(self) -> None:
        self.sightings: list[Sighting] = []

    def offer(self, s: Sighting) -> None:
        self.sightings.append(s)

    async def put_many(self, items: Any) -> None:
        self.sightings.extend(items)

    def reject(self, r: Rejection) -> None:
        raise AssertionError(f"unexpected rejection {r}")


def sightings_of(path: Path) -> list[Sighting]:
    rec = Recorder()
    asyncio.run(BleReplayDriver("rec", [str(path)]).run(rec))
    return sorted(rec.sightings, key=lambda s: s.ts)


class HoldDriver:
    """Delivers its sightings, then waits on a gate (so the test can act on a live service)."""

    def __init__(self, sightings: list[Sighting], gate: asyncio.Event) -> None:
        self.name = "hold"
        self.sightings = sightings
        self.gate = gate

    async def run(self, sink: Any) -> None:
        if self.sightings:
            await sink.put_many(self.sightings)
        await self.gate.wait()


async def until(cond: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_daily_key_rotation_and_retention_purge(tmp_path: Path,
                                                mosquitto: Any) -> None:
    broker = mosquitto()
    db = tmp_path / "gw.db"
    cfg_path = d.gateway_yaml(tmp_path / "gateway.yaml", db=db, broker_url=broker.url)
    (tmp_path / "c.csv").write_text(d.identities_csv(["alice"]))
    assert cli("identities", "import", str(tmp_path / "c.csv"), "-c", str(cfg_path)).returncode == 0
    # Day 1 08:00 and 14:00 UTC, day 2 03:50 UTC (before the 04:00 rotation), day 2 08:00.
    starts = [d.T0, d.T0 + 6 * 3600, d.T0 + 86400 - 4 * 3600 - 600, d.T0 + 86400]
    rec = tmp_path / "days.jsonl"
    rec.write_text("".join(d.ble_recording(["alice"], t, 6) for t in starts))
    sightings = sightings_of(rec)
    cfg = load_config(str(cfg_path), env=d.ENV)
    published: list[OutboundMessage] = []
    visits_table: list[int] = []

    def count_visits() -> int:
        con = sqlite3.connect(db)
        try:
            return int(con.execute("SELECT count(*) FROM identity_visits").fetchone()[0])
        finally:
            con.close()

    async def scenario() -> None:
        gate = asyncio.Event()
        svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=published.append),
                      [HoldDriver(sightings, gate)])
        task = asyncio.create_task(svc.run())
        await until(lambda: svc.runtime is not None
                    and svc.runtime.core.pipeline.observations == len(sightings))
        assert svc.runtime is not None
        control = svc.runtime.control
        await control.tend(starts[-1] + 600)          # capture time: flush, nothing old
        visits_table.append(count_visits())
        await control.tend(d.T0 + 29.9 * 86400)       # day-1 visits are 29.9 days old
        visits_table.append(count_visits())
        await control.tend(d.T0 + 30.5 * 86400)       # day-1 visits past 30 days, day 2 not
        visits_table.append(count_visits())
        linker = control.core.linker
        visits_table.append(linker.visits_in_last(d.PEOPLE["alice"].customer, 3650,
                                                  d.T0 + 30.5 * 86400))
        gate.set()
        await task

    asyncio.run(scenario())
    bodies = [json.loads(m.payload) for m in published]
    started = [b for b in bodies if b["type"] == "presence.visit.started"]
    keys = [b["data"]["device"] for b in started]
    assert len(keys) == 4 and len({b["data"]["visit_id"] for b in started}) == 4
    # One rotation period runs 04:00-04:00 UTC: the first three visits share a key.
    assert keys[0] == keys[1] == keys[2] and keys[3] != keys[0]
    assert sum(b["type"] == LINKED for b in bodies) == 4
    assert all(b["data"].get("customer_id") == d.PEOPLE["alice"].customer for b in started)
    # identity_visits (alice has `offers` consent): 4 records, kept at T0 + 29.9 d; at
    # T0 + 30.5 d the two older than 30 days (T0, T0 + 6 h) are gone, memory included.
    assert visits_table == [4, 4, 2, 2], visits_table


# -- identity sync over MQTT, live ---------------------------------------------------------

def mqtt_publish(broker: LocalBroker, topic: str, payload: bytes, retain: bool = False) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"central-{time.monotonic_ns()}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def sync_body(kind: str, version: int, **fields: Any) -> bytes:
    body = {"format": "presence-gateway/identity-sync/1", "type": kind, "store": "s1",
            "version": version, **fields}
    return json.dumps(body).encode()


def test_identity_sync_over_mqtt(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    db = tmp_path / "gw.db"
    cfg = load_config(str(d.gateway_yaml(tmp_path / "gateway.yaml", db=db,
                                         broker_url=broker.url)), env=d.ENV)
    snap_topic, upd_topic = sync_topics("presence", "s1")
    henry = {"id": "central-henry-1", "customer_id": "cust-henry-2a2a", "kind": "ibeacon",
             "value": f"{d.BEACON_UUID}/7/42", "consent": ["personalization", "analytics"]}
    key = d.SYNC_KEY.encode()
    henry_adverts = _henry_adverts(tmp_path)

    async def scenario(sub: Collector) -> dict[str, Any]:
        gate = asyncio.Event()
        svc = Service(cfg, RunOptions(mode=Mode.LIVE), [GateThenDeliver(henry_adverts, gate)])
        task = asyncio.create_task(svc.run())
        await until(lambda: any(t.endswith("/status") for t, _, _ in sub.snapshot()))
        assert svc.runtime is not None
        rt = svc.runtime.identity
        boundary = svc.runtime.core.boundary
        assert rt.version == 0 and len(rt.index) == 0
        await asyncio.to_thread(mqtt_publish, broker, snap_topic,
                                sync_sign(sync_body("snapshot", 5, entries=[henry],
                                                    opt_out=[d.OPTED_OUT]), key), True)
        await until(lambda: rt.version == 5)
        assert len(rt.opt_out) == 1 and boundary.opt_out == rt.opt_out
        gate.set()  # henry's phone walks in
        await until(lambda: any(e["type"] == LINKED for e in sub.events()), 15)
        before = _registry_rows(db)
        good = sync_sign(sync_body("update", 6, delete_customers=["cust-henry-2a2a"]), key)
        bad = good[:-1] + bytes([good[-1] ^ 1])  # one bit of the tag
        await asyncio.to_thread(mqtt_publish, broker, upd_topic, bad)
        stale = sync_sign(sync_body("update", 3, delete_customers=["cust-henry-2a2a"]), key)
        await asyncio.to_thread(mqtt_publish, broker, upd_topic, stale)
        await until(lambda: len(_rejections(sub)) >= 2, 10)
        state = {"version": rt.version, "entries": len(rt.index), "rows": _registry_rows(db),
                 "before": before}
        svc.stop_event.set()
        await task
        return state

    with Collector(broker.host, broker.port, "presence/v1/s1/#") as sub:
        state = asyncio.run(scenario(sub))
        events = sub.events()
    linked = [e for e in events if e["type"] == LINKED]
    assert [(e["data"]["customer_id"], e["data"]["method"]) for e in linked] == [
        ("cust-henry-2a2a", "ibeacon")]
    rejected = _rejections_of(events)
    assert [(r["data"]["command"], r["data"]["reason"]) for r in rejected] == [
        ("identity.update", "unauthenticated"), ("identity.update", "stale")]
    for r in rejected:
        validate_event(r)
        assert "henry" not in json.dumps(r)
    assert state["version"] == 5 and state["entries"] == 1
    assert state["rows"] == state["before"] == [("central-henry-1", "cust-henry-2a2a", "sync")]


def _henry_adverts(tmp: Path) -> list[Sighting]:
    now = time.time()
    lines = []
    for i in range(12):
        adv = d.ble_advert("grace", now - 12 + i)  # an iBeacon advert, re-aimed at henry
        adv["address"] = "c4:01:02:03:04:4e"
        adv["manufacturer_data"] = {"76": d.ibeacon_hex(d.BEACON_UUID, 7, 42)}
        lines.append(json.dumps(adv))
    path = tmp / "henry.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return sightings_of(path)


class GateThenDeliver:
    """Live driver: waits for the gate, delivers its sightings once, then idles."""

    def __init__(self, sightings: list[Sighting], gate: asyncio.Event) -> None:
        self.name = "gated-live"
        self.sightings = sightings
        self.gate = gate
        self.done = False

    async def run(self, sink: Any) -> None:
        await self.gate.wait()
        if not self.done:
            self.done = True
            await sink.put_many(self.sightings)
        await asyncio.Event().wait()


def _registry_rows(db: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(db)
    try:
        return [tuple(r) for r in con.execute(
            "SELECT entry_id, customer_id, source FROM identity_entries ORDER BY entry_id")]
    finally:
        con.close()


def _rejections_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "presence.command.rejected"]


def _rejections(sub: Collector) -> list[dict[str, Any]]:
    return _rejections_of(sub.events())
