"""Remote configuration: a sealed `presence.configure` command replaces the zones of a live
gateway without a restart, refuses a bad text (nothing changes), and survives a restart.

Live service (wall clock, ticker) with a phone probing in zone `door`, a real Mosquitto, the
command sealed with the gateway's command key as central would send it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.core.commands import sign
from presence_gateway.core.config import parse_config
from presence_gateway.core.presence.config import PresenceSettings, ZoneSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.contract import validate_event
from tests.integration.test_identity_e2e import mqtt_publish, until
from tests.integration.test_service_guard import Radio1
from tests.mqtt_helpers import Collector

KEY = "remote-config-command-key-0123"
TOPIC = "presence/v1/s1/gw1/commands/presence.configure"
ZONES_V1 = "zones:\n  - {name: door}\n"
ZONES_V2 = "zones:\n  - {name: tills, enter_rssi: -70, min_confirm: 1s}\n  - {name: shoes}\n"


def command(text: str, version: str, key: str = KEY) -> tuple[str, bytes]:
    cid = uuid.uuid4().hex
    return cid, sign(key.encode(), {"command": "presence.configure", "target": "s1/gw1",
                                    "id": cid, "issued_at": int(time.time()),
                                    "version": version, "presence": text})


def config(tmp_path: Path, broker: Any) -> Any:
    return parse_config(
        f"store: {{id: s1}}\ngateway: {{id: gw1}}\nmqtt: {{url: '{broker.url}'}}\n"
        f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
        f"offers: {{command_key: env:K}}\npresence:\n  {ZONES_V1.replace(chr(10), chr(10) + '  ')}",
        str(tmp_path / "gw.yaml"), env={"K": KEY})


def results(sub: Collector) -> list[dict[str, Any]]:
    return [orjson.loads(p) for t, p, _ in sub.snapshot() if t == TOPIC + "/result"]


def test_zones_replaced_live_refused_when_bad_and_kept_after_restart(
        tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    cfg = config(tmp_path, broker)

    async def scenario(sub: Collector, steps: bool) -> list[str]:
        svc = Service(cfg, RunOptions(mode=Mode.LIVE, flush_timeout_s=5), [Radio1()])
        task = asyncio.create_task(svc.run())
        await until(lambda: svc.runtime is not None and svc.runtime.publisher is not None
                    and svc.runtime.publisher.connected
                    and any(e["type"] == "presence.zone.entered" for e in sub.events()), 15)
        assert svc.runtime is not None
        if steps:
            _, bad = command("zones:\n  - {name: tills, enter_rssi: loud}\n", "v-bad")
            await asyncio.to_thread(mqtt_publish, broker, TOPIC, bad)
            await until(lambda: len(results(sub)) >= 1)
            _, forged = command(ZONES_V2, "v-forged", key="not-the-key-0123456789abcdef")
            await asyncio.to_thread(mqtt_publish, broker, TOPIC, forged)
            await until(lambda: len(results(sub)) >= 2)
            _, good = command(ZONES_V2, "v2")
            await asyncio.to_thread(mqtt_publish, broker, TOPIC, good)
            await until(lambda: len(results(sub)) >= 3)
            await until(lambda: any(e["type"] == "presence.zone.entered"
                                    and e["data"]["zone"] == "tills" for e in sub.events()))
        zones = [z.name for z in svc.runtime.control.presence.zones]
        svc.stop_event.set()
        await task
        return zones

    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub:
        zones = asyncio.run(scenario(sub, True))
        bad, forged, good = results(sub)[:3]
        events = sub.events()
    assert zones == ["tills", "shoes"]
    assert not bad["data"]["ok"] and bad["data"]["version"] == "v-bad"
    assert any("zones[0].enter_rssi" in e for e in bad["data"]["errors"])
    assert forged["type"] == "presence.command.rejected" or not forged["data"]["ok"]
    assert good["data"]["ok"] and good["data"]["version"] == "v2"
    for r in (bad, good):
        validate_event(r)
    exits = [e for e in events if e["type"] == "presence.zone.exited"]
    assert [e["data"]["zone"] for e in exits][:1] == ["door"], "door is gone: the phone left it"
    with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub:
        after_restart = asyncio.run(scenario(sub, False))
    assert after_restart == ["tills", "shoes"], "the database keeps central's settings"


def test_reconfigure_keeps_visits_and_moves_devices_out_of_removed_zones() -> None:
    """The engine alone: a device in a removed zone leaves it at once, its visit goes on."""
    from presence_gateway.core.model import AddressKind, Kind, Observation, Radio
    door = PresenceSettings(zones=(ZoneSettings(name="door"),), min_sightings=1)
    engine = PresenceEngine(door, gateway_id="gw1", store_id="s1")
    def probe(ts: float) -> Observation:
        return Observation(ts=ts, radio=Radio.WIFI, kind=Kind.PROBE_REQUEST.value, device="d1",
                           address_kind=AddressKind.PUBLIC, rssi=-50, channel=6)

    out = []
    for i in range(5):
        out += engine.feed(probe(100.0 + i))
    assert any(type(e).__name__ == "ZoneEntered" for e in out)
    moved = engine.reconfigure(PresenceSettings(zones=(ZoneSettings(name="tills"),),
                                                min_sightings=1), 110.0)
    assert [type(e).__name__ for e in moved] == ["ZoneExited"]
    later = engine.feed(probe(111.0)) + engine.tick(130.0)
    assert [e.zone for e in later if type(e).__name__ == "ZoneEntered"] == ["tills"]
    assert not [e for e in moved + later if type(e).__name__ == "VisitEnded"]
