"""`presence-gateway demo`: the whole pipeline on bundled real captures, into a real broker.

It starts a private Mosquitto on a free loopback port (or uses --mqtt), subscribes to the
gateway's topic tree, replays the bundled captures through drivers -> privacy boundary -> core
-> SQLite outbox -> MQTT, shows events as they arrive, and ends with a summary. Exit code 0 only
if every published event was received by the subscriber.

The subscriber (cli/monitor.py) uses paho's own network thread: it is a client of the
gateway, not part of it; the gateway drives its MQTT socket from the asyncio loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from presence_gateway.cli.common import Subparsers, add_broker_options, broker_overrides
from presence_gateway.cli.monitor import EventSubscriber
from presence_gateway.core.config import load_config
from presence_gateway.core.model import OutboundMessage
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import RunSummary, Service, run_with_signals

DEMO_STORE, DEMO_GATEWAY = "demo-store", "gw-demo"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("demo", help="replay bundled captures into a broker it starts",
                       description="The whole pipeline on bundled real captures, into a"
                                   " private Mosquitto (or --mqtt), watched by a subscriber.")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    p.add_argument("--dashboard", nargs="?", const="127.0.0.1:8080", metavar="HOST:PORT",
                   help="then serve the dashboard over the demo's events until Ctrl-C"
                        " (default 127.0.0.1:8080)")
    add_broker_options(p, "use this broker instead of starting one: mqtt://[user@]host:port")
    p.set_defaults(func=lambda args: run_demo(quiet=args.quiet, mqtt_url=args.mqtt,
                                              password_from=args.mqtt_password_from,
                                              dashboard=args.dashboard))


def demo_captures() -> list[str]:
    folder = Path(str(resources.files("presence_gateway") / "data" / "demo"))
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix in (".pcap", ".pcapng", ".jsonl", ".log"))


def run_demo(*, quiet: bool = False, mqtt_url: str | None = None,
             password_from: str | None = None, dashboard: str | None = None) -> int:
    from presence_gateway.adapters.mosquitto import local_broker
    from presence_gateway.adapters.mqttlink import tls_context
    from presence_gateway.drivers.registry import replay_settings

    captures = demo_captures()
    with tempfile.TemporaryDirectory(prefix="pg-demo-") as tmp:
        broker = None if mqtt_url else local_broker(workdir=tmp)
        if broker is not None:
            broker.start()
        try:
            url = mqtt_url or (broker.url if broker else "")
            cfg = load_config(None)
            cfg = dataclasses.replace(
                cfg, store_id=DEMO_STORE, gateway_id=DEMO_GATEWAY,
                mqtt=broker_overrides(cfg.mqtt, url, password_from),
                storage=dataclasses.replace(cfg.storage, path=str(Path(tmp) / "demo.db")),
                drivers=replay_settings(captures))
            print(f"presence-gateway demo: broker {url}, {len(captures)} bundled captures:",
                  file=sys.stderr)
            for c in captures:
                print(f"  {Path(c).name}", file=sys.stderr)
            topic = f"{cfg.mqtt.topic_prefix}/v1/{DEMO_STORE}/{DEMO_GATEWAY}/#"
            sub = EventSubscriber(cfg.mqtt.host, cfg.mqtt.port, topic, quiet=quiet,
                                  username=cfg.mqtt.username, password=cfg.mqtt.password,
                                  tls=tls_context(cfg.mqtt))
            published: dict[str, str] = {}
            messages: list[OutboundMessage] = []

            def on_message(m: OutboundMessage) -> None:
                published[m.id] = m.topic
                messages.append(m)

            service = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=on_message))
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
    rc = _report(summary, published, sub.received, missing)
    return _dashboard(messages, cfg.timezone, dashboard) if rc == 0 else rc


def _dashboard(messages: list[OutboundMessage], timezone: str, listen: str | None) -> int:
    """The demo's events into a central database; the dashboard's URL (and, when asked,
    the dashboard itself until Ctrl-C)."""
    from presence_gateway.cli import demo_dashboard
    url, config, password = demo_dashboard.prepare(messages, timezone)
    where = listen or "127.0.0.1:8080"
    print(f"\ndashboard: presence-gateway dashboard --db {url} -c {config} --listen {where}\n"
          f"  then open http://{where}/ and log in as admin (password in "
          f"{config.parent / 'dashboard.pw'})", file=sys.stderr)
    if listen is None:
        return 0
    from presence_gateway.cli.dashboard import build_auth, listen_address, serve
    dash_cfg = load_config(str(config))
    host, port = listen_address(listen)
    print(f"  admin password: {password}", file=sys.stderr)
    return asyncio.run(serve(dash_cfg, build_auth(dash_cfg), url, host, port))


def _report(summary: RunSummary, published: dict[str, str], received: dict[str, str],
            missing: list[str]) -> int:
    by_type = Counter(received[i] for i in published if i in received)
    print("\nsummary", file=sys.stderr)
    print(f"  observations: {summary.observations} (+{summary.throttled} repeats throttled)"
          f"   rejected frames: "
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
