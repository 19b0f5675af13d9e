"""Outbox + Publisher throughput into a local mosquitto, against raw paho and a naive loop.

Run: `python -m bench.publish [N]` (default 50,000 messages of 300 bytes, QoS 1). Starts its
own mosquitto on a free loopback port and puts the SQLite file on the working disk (not
tmpfs), so the fsyncs are real. Prints msgs/s (wall) and CPU µs/msg (this process, all
threads: paho, aiosqlite's worker, the loop; mosquitto's own CPU is not counted).

Rows:
- raw paho: paho's own network thread (`loop_start`), 20 in flight, nothing stored; the
  ceiling this machine allows for QoS 1 through paho (3.1.1, and 5 with the same
  pre-serialised content-type property the Publisher sends).
- outbox append: `Outbox.append` in batches of 1000 (one transaction each).
- outbox -> broker, window 20: the Publisher draining a full outbox (read-ahead, ack-clocked
  window, batched deletes), as the gateway runs it.
- outbox -> broker, window 1: the same with one message in flight, i.e. "await each publish".
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace

from paho.mqtt.client import Client, ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bench.summary import report
from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.paho_fast import PackedProperties
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.core.config import MqttSettings
from presence_gateway.core.model import OutboundMessage

PAYLOAD = b"x" * 300
TOPIC = "bench/v1/s/g/events/presence.visit.started"


def _messages(n: int) -> list[OutboundMessage]:
    return [OutboundMessage(f"id-{i:08d}", i + 1, TOPIC, PAYLOAD, 1, False, 0.0)
            for i in range(n)]


def raw_paho(port: int, n: int, v5: bool) -> tuple[float, float]:
    """paho with its own thread: publish n QoS 1 messages, wait for every PUBACK."""
    done = threading.Event()
    connected = threading.Event()
    acks = 0

    def on_publish(c: Client, u: object, mid: int, rc: ReasonCode, p: Properties) -> None:
        nonlocal acks
        acks += 1
        if acks == n:
            done.set()

    def on_connect(c: Client, u: object, f: ConnectFlags, rc: ReasonCode,
                   p: Properties | None) -> None:
        connected.set()

    c = Client(CallbackAPIVersion.VERSION2,
               protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
    props = None
    if v5:
        props = PackedProperties("application/cloudevents+json")
    c.on_publish = on_publish
    c.on_connect = on_connect
    c.max_inflight_messages_set(20)
    c.connect("127.0.0.1", port)
    c.loop_start()
    connected.wait(5)
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        c.publish(TOPIC, PAYLOAD, 1, properties=props)
    done.wait(300)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    c.disconnect()
    c.loop_stop()
    return wall, cpu


async def outbox_append(path: str, msgs: list[OutboundMessage]) -> tuple[float, float]:
    async with await Outbox.open(path, max_rows=10_000_000, max_age_s=86400) as ob:
        t, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(msgs), 1000):
            await ob.append(msgs[i:i + 1000])
        return time.perf_counter() - t, time.process_time() - cpu


async def drain(path: str, port: int, window: int, n: int) -> tuple[float, float]:
    """Publisher draining an outbox holding n rows (filled by outbox_append)."""
    settings = replace(MqttSettings(), port=port, max_inflight=window)
    async with await Outbox.open(path, max_rows=10_000_000, max_age_s=86400) as ob:
        assert ob.size == n, ob.size
        pub = Publisher(settings, ob, status_topic="bench/status",
                        online_payload=lambda: b"online", offline_payload=b"offline")
        t, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(pub.run())
        ok = await pub.flush(600)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert ok and pub.acked == n, (ok, pub.acked)
        return wall, cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    rows: list[tuple[str, int, float, float]] = []
    base = os.path.join(os.getcwd(), "var")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as tmp, LocalBroker(workdir=tmp) as broker:
        for v5 in (False, True):
            wall, cpu = raw_paho(broker.port, n, v5)
            rows.append((f"raw paho (thread), MQTT {'5' if v5 else '3.1.1'}, no store", n,
                         wall, cpu))
        msgs = _messages(n)
        for window in (20, 1):
            count = n if window > 1 else min(n, 10_000)
            path = os.path.join(tmp, f"outbox-{window}.db")
            wall, cpu = asyncio.run(outbox_append(path, msgs[:count]))
            if window > 1:
                rows.append(("outbox append, batches of 1000", count, wall, cpu))
            wall, cpu = asyncio.run(drain(path, broker.port, window, count))
            label = "await each publish" if window == 1 else "read-ahead, ack-clocked"
            rows.append((f"outbox -> broker, window {window} ({label})", count, wall, cpu))
    for name, count, wall, _ in rows:
        if name.startswith("outbox -> broker, window 20"):
            report("publish_per_s", count / wall)
    print(f"{'case':<58} {'msgs':>7} {'msgs/s':>9} {'CPU µs/msg':>11}")
    for name, count, wall, cpu in rows:
        print(f"{name:<58} {count:>7} {count / wall:>9.0f} {cpu / count * 1e6:>11.1f}")


if __name__ == "__main__":
    main()
