"""config/fleet/mosquitto-acl.example on a real Mosquitto: a store's credentials reach its own
topic subtree and nothing else (neither publish nor read)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from presence_gateway.adapters.mosquitto import LocalBroker, find_mosquitto
from presence_gateway.core.envelope import Topics

ACL = Path(__file__).resolve().parents[2] / "config" / "fleet" / "mosquitto-acl.example"
USERS = {"s1": "pw-s1", "s2": "pw-s2", "central": "pw-central"}


class Client:
    def __init__(self, port: int, user: str, topic: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.acks: dict[int, int] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.username_pw_set(user, USERS[user])
        self.c.on_message = self._message
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.c.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, 1) if topic
                                                    else ready.set())
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10), f"{user} could not connect/subscribe"

    def _message(self, c: object, u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.c.publish(topic, payload, 1)
        info.wait_for_publish(5)
        return self.acks.get(info.mid, -1)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def once(port: int, user: str, topic: str, payload: bytes) -> int:
    c = Client(port, user)
    try:
        return c.publish(topic, payload)
    finally:
        c.close()


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (Debian: apt-get install mosquitto)")
    broker = LocalBroker(workdir=str(tmp_path), users=USERS)
    with broker.conf.open("a") as conf:
        conf.write(f"acl_file {ACL}\n")
    broker.start()
    yield broker
    broker.close()


def test_a_store_reaches_only_its_own_subtree(acl_broker: LocalBroker) -> None:
    s1 = {layout: Topics("presence", "s1", "gw1", layout=layout) for layout in ("v1", "v2")}
    s2 = {layout: Topics("presence", "s2", "gw1", layout=layout) for layout in ("v1", "v2")}
    port = acl_broker.port
    central = Client(port, "central", "presence/#")
    spy = Client(port, "s2", "presence/#")  # store 2 tries to read everything
    gw1 = Client(port, "s1", f"{s1['v2'].base}/commands/#")
    try:
        # Mosquitto 2.0 answers a forbidden v5 publish with PUBACK 0x87 (then drops the
        # connection): one client per forbidden attempt.
        not_authorized = 0x87
        for layout in ("v1", "v2"):
            assert once(port, "s1", s1[layout].event("presence.footfall"), b"own") < 0x80
            assert once(port, "s1", s2[layout].event("presence.footfall"), b"forged") \
                == not_authorized
            assert once(port, "s1", s2[layout].commands + "/offers.reload", b"forged") \
                == not_authorized
        assert spy.publish(s2["v2"].event("x"), b"spy-own") < 0x80
        assert central.publish(s1["v2"].commands + "/events.resend", b"cmd") < 0x80
        time.sleep(1.0)
        with central.lock:
            seen = {p for _, p in central.got}
        assert seen == {b"own", b"spy-own", b"cmd"}, seen  # the forgeries never got in
        with spy.lock:
            leaked = [t for t, _ in spy.got if "/s1/" in t]
        assert not leaked, leaked  # store 2 read nothing of store 1
        assert {p for _, p in spy.got} == {b"spy-own"}
        assert {p for _, p in gw1.got} == {b"cmd"}  # central's command reached store 1
    finally:
        for c in (central, spy, gw1):
            c.close()
