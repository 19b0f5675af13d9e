"""Test-side MQTT subscriber: a real paho client (its own network thread is fine in tests)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Collector:
    """Subscribes to a topic filter and records (topic, payload, retain) as they arrive."""

    def __init__(self, host: str, port: int, topic: str, *, persistent: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A persistent session (clean_session False) makes the broker queue QoS 1 messages for
        # this subscriber while it is disconnected, e.g. across a broker restart.
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  clean_session=not persistent)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def __enter__(self) -> Collector:
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "test subscriber could not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for _, payload, _ in self.snapshot():
            if payload.startswith(b"PGS1"):  # a sealed inbound message (sync, command)
                continue
            body = orjson.loads(payload)
            if isinstance(body, dict) and "specversion" in body:
                out.append(body)
        return out

    def wait_for_ids(self, ids: set[str], timeout: float) -> set[str]:
        """Wait until every id arrived; return the ids still missing."""
        deadline = time.monotonic() + timeout
        missing = set(ids)
        while time.monotonic() < deadline:
            missing = ids - {e["id"] for e in self.events()}
            if not missing:
                break
            time.sleep(0.05)
        return missing

    def wait_quiet(self, seconds: float) -> list[tuple[str, bytes, bool]]:
        time.sleep(seconds)
        return self.snapshot()
