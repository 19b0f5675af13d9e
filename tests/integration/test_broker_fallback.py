"""Against a 3.1.1-only broker (amqtt, an independent implementation) the gateway falls back
from MQTT 5 by itself and still delivers every event."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import AmqttBroker, amqtt_available
from presence_gateway.cli.demo import demo_captures
from tests.integration.test_spine import config, event_ids, run_service
from tests.mqtt_helpers import Collector

pytestmark = pytest.mark.skipif(not amqtt_available(), reason="amqtt is not installed")


def test_auto_protocol_falls_back_to_311_and_delivers(tmp_path: Path) -> None:
    broker = AmqttBroker(workdir=str(tmp_path))
    broker.start()
    try:
        cfg = config(tmp_path, broker, [p for p in demo_captures() if "tcpdump" in p])
        assert cfg.mqtt.protocol == "auto"
        with Collector(broker.host, broker.port, "presence/v1/s1/gw1/#") as sub:
            summary, published = run_service(cfg, flush_timeout_s=40)
            missing = sub.wait_for_ids(event_ids(published), timeout=15)
        assert published and not missing
        assert summary.acked >= len(published) and summary.outbox_depth == 0
    finally:
        broker.close()


def test_forced_v5_against_a_311_broker_keeps_events_in_the_outbox(tmp_path: Path) -> None:
    broker = AmqttBroker(workdir=str(tmp_path))
    broker.start()
    try:
        cfg = config(tmp_path, broker, [p for p in demo_captures() if "tcpdump" in p])
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, protocol="5"))
        summary, published = run_service(cfg, flush_timeout_s=2)
        assert published and summary.acked == 0
        assert summary.outbox_depth == len(published)  # nothing lost: kept for the next start
    finally:
        broker.close()
