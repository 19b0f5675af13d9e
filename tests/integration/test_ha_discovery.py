"""Home Assistant MQTT discovery against a real Mosquitto, from a live gateway.

Run 1 (discovery on, zones entrance + shoes): retained configs for the store sensors, one per
zone and the gateway's connectivity, each pointing at state the gateway really publishes.
Run 2 on the same database (zone `shoes` removed): its config is emptied (HA deletes it), the
rest stays. Run 3 (discovery off): every config is emptied.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.core.config import parse_config
from presence_gateway.core.envelope import Topics
from presence_gateway.core.ha_discovery import DiscoverySettings, discovery_messages, removals
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.integration.test_service_guard import Radio1
from tests.mqtt_helpers import Collector

PREFIX = "homeassistant"


def test_messages_point_at_the_published_state() -> None:
    topics = Topics("presence", "s1", "gw1")
    msgs = discovery_messages(DiscoverySettings(enabled=True), topics, store_id="s1",
                              gateway_id="gw1", zones=["entrance", "shoe rack"], version="9")
    zone = orjson.loads(msgs[f"{PREFIX}/sensor/presence_gateway_s1_gw1/zone_shoe_rack_present"
                             "/config"])
    assert zone["state_topic"] == "presence/v1/s1/gw1/state/occupancy/shoe rack"
    assert zone["value_template"] == "{{ value_json.data.present }}"
    assert zone["availability_topic"] == topics.status
    assert len({orjson.loads(p)["unique_id"] for p in msgs.values()}) == len(msgs) == 6
    assert discovery_messages(DiscoverySettings(), topics, store_id="s1", gateway_id="gw1",
                              zones=["a"], version="9") == {}
    assert removals(["x", *msgs], msgs) == {"x": b""}


def run(tmp_path: Path, broker: Any, extra: str) -> None:
    cfg = parse_config(f"store: {{id: s1}}\ngateway: {{id: gw1}}\nmqtt: {{url: '{broker.url}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
                       + extra, str(tmp_path / "gw.yaml"))
    svc = Service(cfg, RunOptions(mode=Mode.LIVE, flush_timeout_s=5), [Radio1()])

    async def scenario() -> None:
        task = asyncio.create_task(svc.run())
        deadline = time.monotonic() + 10
        while svc.runtime is None or svc.runtime.publisher is None or \
                not svc.runtime.publisher.connected:
            assert not task.done() and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the announcer's poll, the broker's acknowledgements
        svc.stop_event.set()
        await task

    asyncio.run(scenario())


def retained(broker: Any) -> dict[str, bytes]:
    with Collector(broker.host, broker.port, f"{PREFIX}/#") as c:
        got = c.wait_quiet(1.0)
    return {t: p for t, p, r in got if r}


ZONES = ("presence:\n  zones:\n    - {name: entrance}\n    - {name: shoes}\n")


def test_configs_published_then_removed_with_a_zone_then_all(tmp_path: Path,
                                                             mosquitto: Any) -> None:
    broker = mosquitto()
    run(tmp_path, broker, ZONES + "home_assistant: {discovery: true}\n")
    first = retained(broker)
    node = f"{PREFIX}/sensor/presence_gateway_s1_gw1"
    assert {f"{node}/zone_entrance_present/config", f"{node}/zone_shoes_present/config",
            f"{node}/present/config", f"{PREFIX}/binary_sensor/presence_gateway_s1_gw1/status"
            "/config"} <= set(first)
    run(tmp_path, broker, "presence:\n  zones:\n    - {name: entrance}\n"
                          "home_assistant: {discovery: true}\n")
    second = retained(broker)
    assert f"{node}/zone_shoes_present/config" not in second  # emptied: HA deletes it
    assert f"{node}/zone_entrance_present/config" in second
    run(tmp_path, broker, "home_assistant: {discovery: false}\n")
    assert retained(broker) == {}
