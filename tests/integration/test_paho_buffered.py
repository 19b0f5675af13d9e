"""Chunked socket reads and writes (adapters/paho_fast.py `ChunkedClient`) against a real
Mosquitto: the publisher's messages go out and their acknowledgements come in, and a
subscriber's burst is read, in far fewer system calls than packets, in order and complete;
nothing is left waiting in the read buffer, and a reconnect starts with an empty one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.adapters.mqttlink import Link
from presence_gateway.adapters.paho_fast import FAST_READ, FAST_WRITE, ChunkedClient
from presence_gateway.core.model import OutboundMessage
from tests.conftest import Subscriber
from tests.integration.test_publisher import (
    BASE,
    TOPICS,
    check_delivery,
    make,
    open_ob,
    running,
    until,
)


def _count_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[object]:
    """Every call a ChunkedClient makes to paho's own `method` (each one system call), by its
    argument; the test's own plain subscriber is not counted."""
    calls: list[object] = []
    original: Callable[[mqtt.Client, object], object] = getattr(mqtt.Client, method)

    def counting(self: mqtt.Client, arg: object) -> object:
        if isinstance(self, ChunkedClient):
            calls.append(arg)
        return original(self, arg)

    monkeypatch.setattr(mqtt.Client, method, counting)
    return calls


@pytest.fixture
def socket_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """paho's `_sock_recv` calls (one `recv` each)."""
    assert FAST_READ, "paho's internals changed: chunked reads are off"
    return _count_calls(monkeypatch, "_sock_recv")


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """paho's `_sock_send` calls (one `send` each)."""
    assert FAST_WRITE, "paho's internals changed: chunked writes are off"
    return _count_calls(monkeypatch, "_sock_send")


async def test_messages_and_acknowledgements_go_in_chunks(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker], socket_reads: list[object],
        socket_writes: list[object], subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    sub = subscriber(broker, f"{BASE}/events/#")
    msgs = [OutboundMessage(id=f"id-{s}", seq=s, topic=TOPICS[s % 2], payload=b'{"s":%d}' % s,
                            created=float(s)) for s in range(1, 501)]
    async with await open_ob(tmp_path) as ob:
        pub = make(broker.port, ob, max_inflight=20)
        await ob.append(msgs)
        async with running(pub):
            assert await pub.flush(20)
            got = await sub.until(500, 10)
        assert pub.acked == 500 and await ob.depth() == 0
    # paho alone: 3 reads per PUBACK (first byte, length, mid), 1,500 and more; one send each
    assert len(socket_reads) < 500, f"{len(socket_reads)} socket reads for 500 PUBACKs"
    assert len(socket_writes) < 250, f"{len(socket_writes)} sends for 500 messages"
    check_delivery(got, msgs)  # complete, and in order per topic
    assert len(got) == 500


async def _subscribed(broker: LocalBroker, topic: str,
                      on_message: Callable[[mqtt.MQTTMessage], object]
                      ) -> tuple[ChunkedClient, Link]:
    """A ChunkedClient on the running loop through the gateway's Link, subscribed to `topic`
    at QoS 0 (paho's loop_read then takes one packet per call)."""
    loop = asyncio.get_running_loop()
    client = ChunkedClient(CallbackAPIVersion.VERSION2, client_id=f"sub-{topic[:-2]}",
                           protocol=MQTTProtocolVersion.MQTTv311)
    client.on_message = lambda c, u, msg: on_message(msg)
    subscribed = loop.create_future()
    client.on_subscribe = lambda *a: loop.call_soon_threadsafe(subscribed.set_result, None)
    link = Link(client, loop)
    await link.connect(broker.host, broker.port, 30, None)
    await asyncio.wait_for(link.connack, 5)
    client.subscribe(topic, qos=0)
    await asyncio.wait_for(subscribed, 5)
    return client, link


async def test_a_burst_is_read_at_once_and_a_reconnect_starts_empty(
        mosquitto: Callable[..., LocalBroker], socket_reads: list[object]) -> None:
    """A QoS 0 subscriber: paho's loop_read takes one packet per call when nothing is in
    flight, so the burst's other packets wait in the buffer, where the socket will not
    signal them: the link must read them without more traffic."""
    broker = mosquitto()
    got: list[bytes] = []
    client, link = await _subscribed(broker, "burst/#", lambda msg: got.append(msg.payload))

    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="burst-pub")
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    try:
        before = len(socket_reads)
        for i in range(200):
            sender.publish("burst/x", b"m%d" % i, qos=0)
        assert await until(lambda: len(got) == 200, 5.0), f"{len(got)} of 200 arrived"
        assert got == [b"m%d" % i for i in range(200)]
        assert len(socket_reads) - before < 100, "read packet by packet"
        assert client.buffered() == 0
        # a reconnect: whatever the old connection left must not be read as the new one's
        client._rbuf += b"\x30\x05stale"  # half a PUBLISH of a connection that is gone
        client.disconnect()
        await asyncio.wait_for(link.closed, 5)
        assert client.buffered() == 0
    finally:
        sender.loop_stop()
        sender.disconnect()
        link.detach()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def _packet(first: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 control packet (spec 2.2: fixed header, remaining length)."""
    return bytes([first]) + _varint(len(body)) + body


async def test_a_flood_does_not_hold_the_loop(mosquitto: Callable[..., LocalBroker]) -> None:
    """A publisher floods Mosquitto from a raw socket (packets Mosquitto itself accepts);
    the subscriber's link reads in bounded rounds, so other tasks keep running while the
    chunks keep coming (every round of a flood may read 64 kB more)."""
    import socket
    import threading

    broker = mosquitto()
    loop = asyncio.get_running_loop()
    got = [0]
    _, link = await _subscribed(broker, "flood/#", lambda msg: got.__setitem__(0, got[0] + 1))

    total = 100_000  # ~1 s of work here: held at once, the loop stalls for most of it
    connect = _packet(0x10, _mqtt_str(b"MQTT") + bytes([4, 0x02, 0, 60]) + _mqtt_str(b"flooder"))
    publish = _packet(0x30, _mqtt_str(b"flood/x") + b"p" * 20)
    raw = socket.create_connection((broker.host, broker.port))
    raw.sendall(connect)
    assert raw.recv(4)[:1] == b"\x20"  # CONNACK
    sender = threading.Thread(target=raw.sendall, args=(publish * total,))

    gaps: list[float] = []
    stop = asyncio.Event()

    async def other_task() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = loop.time()
            gaps.append(now - last)
            last = now

    other = asyncio.create_task(other_task())
    try:
        sender.start()
        assert await until(lambda: got[0] >= total, 60.0), f"{got[0]} of {total} arrived"
    finally:
        stop.set()
        await other
        sender.join()
        raw.close()
        link.detach()
    assert max(gaps) < 0.25, f"the loop was held for {max(gaps):.2f} s"


def test_a_client_finalized_after_its_loop_ended_does_not_raise() -> None:
    """paho closes its socket in `Client.__del__`, which the garbage collector may run on any
    thread after the test's (or the service's) loop has closed: the socket-close callback
    then has nothing to undo, and used to raise "Event loop is closed" from the finalizer."""
    import threading

    loop = asyncio.new_event_loop()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    link = Link(client, loop)
    loop.close()
    errors: list[BaseException] = []

    def finalize() -> None:
        try:
            link._sock_close(client, None, None)
        except BaseException as exc:  # the test reports whatever escaped
            errors.append(exc)

    t = threading.Thread(target=finalize)
    t.start()
    t.join()
    assert errors == []
