"""The retained status of a real `presence-gateway run` process: RFC 3339 times, the stop's
offline made at the stop, and a last will that claims no time it cannot know."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson

from presence_gateway.adapters.mosquitto import LocalBroker
from tests.conftest import Subscriber
from tests.contract import validate_status

TOPIC = "presence/v1/s1/gw1/status"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def start(tmp_path: Path, broker: LocalBroker) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("store: {id: s1}\ngateway: {id: gw1}\n"
                   f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
                   f"storage: {{path: {tmp_path / 'gw.db'}}}\n"
                   "drivers:\n  - {type: wifi_monitor, interface: pgnodongle0}\n")
    return subprocess.Popen([sys.executable, "-m", "presence_gateway", "run", "-c", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def statuses(sub: Subscriber, n: int) -> list[dict[str, object]]:
    return [orjson.loads(p) for _, p, _ in sub.wait_for(n, 20)]


def test_online_then_offline_at_the_stop_in_rfc3339(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    sub = subscriber(broker, TOPIC)
    t0 = time.time()
    proc = start(tmp_path, broker)
    [online] = statuses(sub, 1)
    assert online["state"] == "online"
    assert t0 - 1 <= epoch(str(online["started"])) <= epoch(str(online["time"])) <= time.time()
    time.sleep(1.0)
    stop_at = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    offline = statuses(sub, 2)[-1]
    assert offline["state"] == "offline" and offline["reason"] == "stopped"
    assert stop_at - 0.5 <= epoch(str(offline["time"])) <= time.time()
    for s in (online, offline):
        validate_status(s)


def test_the_will_says_connection_lost_without_a_time(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    sub = subscriber(broker, TOPIC)
    proc = start(tmp_path, broker)
    assert statuses(sub, 1)[0]["state"] == "online"
    proc.kill()
    proc.wait(10)
    will = statuses(sub, 2)[-1]  # mosquitto sends it once the dead socket is noticed
    assert will["state"] == "offline" and will["reason"] == "connection_lost"
    assert "time" not in will
    validate_status(will)
