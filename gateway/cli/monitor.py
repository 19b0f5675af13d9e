"""`presence-gateway monitor`: watch a store's events arrive, one line each.

A plain MQTT subscriber of the event contract, for the person installing or debugging a
gateway (the demo uses it too). It runs paho's own network thread (`loop_start`): it is a
client of the gateway, not part of it. MQTT 3.1.1, so it works with any broker.
"""

from __future__ import annotations

import argparse
import ssl
import threading
import time
import uuid
from typing import Any

import orjson

from presence_gateway.cli.common import Subparsers, add_broker_options, add_config, configure
from presence_gateway.errors import GatewayError

_SHOWN = ("device", "zone", "duration_s", "dwell_s", "observations", "present", "entries",
          "passers_by", "by_radio", "customer_id", "method", "offer_id", "ok", "reason")


def register(sub: Subparsers) -> None:
    p = sub.add_parser("monitor", help="watch a store's events arrive",
                       description="Subscribe to a store's events and print one line each.")
    add_config(p, "YAML config (broker, store)")
    add_broker_options(p)
    p.add_argument("--gateway", default="+", help="one gateway id (default: all)")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.set_defaults(func=monitor_command)


def monitor_command(args: argparse.Namespace) -> int:
    from presence_gateway.adapters.mqttlink import tls_context  # paho: only when monitoring

    cfg = configure(args)
    m = cfg.mqtt
    topic = f"{m.topic_prefix}/v1/{cfg.store_id}/{args.gateway}/#"
    return run_monitor(m.host, m.port, topic, count=args.count, seconds=args.seconds,
                       username=m.username, password=m.password, tls=tls_context(m))


def event_line(ev: dict[str, Any]) -> str:
    data = ev.get("data") or {}
    shown = " ".join(f"{k}={data[k]}" for k in _SHOWN if k in data)
    return f"  #{ev.get('sequence', '?'):<5} {ev.get('time', '')}  {ev.get('type', ''):<26} {shown}"


class EventSubscriber:
    """Subscribes to a topic filter, keeps the ids and types of the CloudEvents it receives
    and prints them unless quiet."""

    def __init__(self, host: str, port: int, topic: str, *, quiet: bool = False,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        self.quiet = quiet
        self.received: dict[str, str] = {}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"pg-monitor-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:  # mqtts://, with the gateway's CA and client certificate if any
            self.client.tls_set_context(tls)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise GatewayError(f"cannot reach the broker at {host}:{port}: {exc}") from None
        self.client.loop_start()
        if not self.ready.wait(10):
            self.close()
            raise GatewayError(f"could not subscribe on {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict) or "specversion" not in body:
            return
        with self.lock:
            self.received[str(body.get("id"))] = str(body.get("type"))
        if not self.quiet:
            print(event_line(body), flush=True)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_monitor(host: str, port: int, topic: str, *, count: int | None = None,
                seconds: float | None = None, username: str | None = None,
                password: str | None = None, tls: ssl.SSLContext | None = None) -> int:
    """Print events until Ctrl-C, `count` events or `seconds`; exit 0."""
    sub = EventSubscriber(host, port, topic, username=username, password=password, tls=tls)
    print(f"watching {topic} on {host}:{port} (Ctrl-C to stop)", flush=True)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while (count is None or sub.count() < count) and (
                deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    return 0
