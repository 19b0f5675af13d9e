"""`presence-gateway demo`: the whole pipeline on bundled real captures, into a real broker.

It starts a private Mosquitto on a free loopback port (or uses --mqtt), subscribes to the
gateway's topic tree, replays the bundled captures through drivers -> privacy boundary -> core
-> SQLite outbox -> MQTT, shows events as they arrive, and ends with a summary. Exit code 0 only
if every published event was received by the subscriber.

The subscriber uses paho's own network thread (`loop_start`): it is a demo-side client, not
part of the gateway, which drives its MQTT socket from the asyncio loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import threading
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from gateway.core.config import DriverSettings, load_config, mqtt_from_url
from gateway.core.model import OutboundMessage
from gateway.errors import GatewayError

DEMO_STORE, DEMO_GATEWAY = "demo-store", "gw-demo"


def demo_captures() -> list[str]:
    folder = Path(str(resources.files("gateway") / "data" / "demo"))
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix in (".pcap", ".pcapng", ".jsonl", ".log"))


class _Subscriber:
    def __init__(self, host: str, port: int, topic: str, quiet: bool) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        self.quiet = quiet
        self.received: dict[str, str] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"demo-sub-{int(time.time())}",
                                  protocol=mqtt.MQTTv311)  # any broker speaks 3.1.1
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise GatewayError(f"demo subscriber could not subscribe on {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict) or "specversion" not in body:
            return
        with self.lock:
            self.received[body["id"]] = body["type"]
        if not self.quiet:
            print(_line(body), flush=True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _line(ev: dict[str, Any]) -> str:
    data = ev.get("data", {})
    keys = ("device", "zone", "duration_s", "observations", "present", "entries",
            "by_radio", "customer_id", "offer_id")
    shown = " ".join(f"{k}={data[k]}" for k in keys if k in data)
    return f"  #{ev['sequence']:<5} {ev['time']}  {ev['type']:<26} {shown}"


def run_demo(*, quiet: bool = False, mqtt_url: str | None = None) -> int:
    from drivers.registry import create, detect_capture
    from gateway.mosquitto import local_broker
    from gateway.service import RunOptions, Service, run_with_signals

    captures = demo_captures()
    with tempfile.TemporaryDirectory(prefix="pg-demo-") as tmp:
        broker = None if mqtt_url else local_broker(workdir=tmp)
        if broker is not None:
            broker.start()
        try:
            url = mqtt_url or (broker.url if broker else "")
            cfg = load_config(None)
            groups: dict[str, list[str]] = {}
            for path in captures:
                groups.setdefault(detect_capture(path), []).append(path)
            cfg = dataclasses.replace(
                cfg, store_id=DEMO_STORE, gateway_id=DEMO_GATEWAY,
                mqtt=mqtt_from_url(url, cfg.mqtt),
                storage=dataclasses.replace(cfg.storage, path=str(Path(tmp) / "demo.db")),
                drivers=tuple(DriverSettings(t, f"demo-{t}", {"paths": ps})
                              for t, ps in groups.items()))
            print(f"presence-gateway demo: broker {url}, {len(captures)} bundled captures:",
                  file=sys.stderr)
            for c in captures:
                print(f"  {Path(c).name}", file=sys.stderr)
            topic = f"{cfg.mqtt.topic_prefix}/v1/{DEMO_STORE}/{DEMO_GATEWAY}/#"
            sub = _Subscriber(cfg.mqtt.host, cfg.mqtt.port, topic, quiet)
            published: dict[str, str] = {}

            def on_message(m: OutboundMessage) -> None:
                published[m.id] = m.topic

            service = Service(cfg, [create(d) for d in cfg.drivers],
                              RunOptions(replay=True, on_message=on_message))
            summary = asyncio.run(run_with_signals(service))
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                with sub.lock:
                    missing = [i for i in published if i not in sub.received]
                if not missing:
                    break
                time.sleep(0.05)
            sub.close()
        finally:
            if broker is not None:
                broker.close()
    return _report(summary, published, sub.received, missing)


def _report(summary: Any, published: dict[str, str], received: dict[str, str],
            missing: list[str]) -> int:
    by_type = Counter(received[i] for i in published if i in received)
    print("\nsummary", file=sys.stderr)
    print(f"  observations: {summary.observations}   rejected frames: "
          f"{sum(summary.rejects.values())}   queue drops: {summary.queue_drops}", file=sys.stderr)
    print(f"  events published: {len(published)}   received by the subscriber: "
          f"{len(published) - len(missing)}   acknowledged by the broker: {summary.acked}",
          file=sys.stderr)
    for t, n in sorted(by_type.items()):
        print(f"    {t:<28} {n}", file=sys.stderr)
    if missing:
        print(f"  MISSING: {len(missing)} events were published but not received",
              file=sys.stderr)
        return 1
    print("  every published event was received", file=sys.stderr)
    return 0
