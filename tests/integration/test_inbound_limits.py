"""Junk on an inbound topic cannot fill the outbox or the log (rate limit per source topic).

A live gateway on a real Mosquitto; 300 junk messages on its identity updates topic. Before,
each became a QoS 1 rejection event and a warning line (3,000 -> 2,949 events in the campaign).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from presence_gateway.core.config import parse_config
from presence_gateway.core.model import OutboundMessage
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service

JUNK = 300


def flood(host: str, port: int, topic: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="junk-sender")
    c.connect(host, port)
    c.loop_start()
    try:
        for i in range(JUNK):
            c.publish(topic, b'{"body": "x", "hmac": "%d"}' % i, qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_flood_of_junk_gives_a_few_events_and_a_counter(
        tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture) -> None:
    broker = mosquitto()
    cfg = parse_config(f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
                       f"mqtt: {{url: '{broker.url}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
                       "identity: {sync_key: env:PG_SYNC}\n"
                       "presence: {stats_interval: 1s}\n", "t.yaml",
                       env={"PG_SYNC": "sync-key-0123456789abcdef"})
    out: list[OutboundMessage] = []

    async def idle(sink: Any) -> None:
        await asyncio.Event().wait()

    class Idle:
        name = "idle"
        run = staticmethod(idle)

    svc = Service(cfg, RunOptions(mode=Mode.LIVE, on_message=out.append), [Idle()])

    async def scenario() -> None:
        task = asyncio.create_task(svc.run())
        deadline = time.monotonic() + 10
        while not (svc.runtime and svc.runtime.publisher and svc.runtime.publisher.connected):
            assert time.monotonic() < deadline, "never connected"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # subscriptions made
        await asyncio.to_thread(flood, broker.host, broker.port, "presence/v1/s1/identity/updates")
        deadline = time.monotonic() + 10
        ctl = svc.runtime.control
        while sum(ctl.rejections.suppressed.values()) + 5 < JUNK:
            assert time.monotonic() < deadline, "the junk never arrived"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # one more stats event
        svc.stop_event.set()
        await task

    with caplog.at_level(logging.WARNING, logger="presence_gateway"):
        asyncio.run(scenario())
    bodies = [orjson.loads(m.payload) for m in out]
    rejected = [b for b in bodies if b["type"] == "presence.command.rejected"]
    assert 1 <= len(rejected) <= 6
    warnings = [r for r in caplog.records if "rejected on" in r.getMessage()]
    assert len(warnings) == len(rejected)
    stats = [b for b in bodies if b["type"] == "presence.gateway.stats"]
    assert stats[-1]["data"]["inbound_suppressed"] == JUNK - len(rejected)
