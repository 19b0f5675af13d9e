"""Publisher against a real mosquitto: order, broker restarts, broker down, status/LWT, commands."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from presence_gateway.adapters.mosquitto import LocalBroker, free_port
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.publisher import CONTENT_TYPE, Publisher
from presence_gateway.core.config import MqttSettings
from presence_gateway.core.model import OutboundMessage
from tests.conftest import Subscriber

ROOT = Path(__file__).resolve().parents[2]
BASE = "presence/v1/s1/gw1"
STATUS = f"{BASE}/status"
TOPICS = [f"{BASE}/events/a", f"{BASE}/events/b", f"{BASE}/state/c"]


def batch(first: int, n: int) -> list[OutboundMessage]:
    return [OutboundMessage(id=f"id-{s}", seq=s, topic=TOPICS[s % 2],
                            payload=b'{"seq":%d}' % s, created=float(s))
            for s in range(first, first + n)]


def make(broker_port: int, ob: Outbox, **kw: object) -> Publisher:
    settings = replace(MqttSettings(), port=broker_port, keepalive=5,
                       **{k: v for k, v in kw.items() if k in ("protocol", "max_inflight")})
    return Publisher(settings, ob, status_topic=STATUS, online_payload=lambda: b"online",
                     offline_payload=b"offline", backoff=(0.1, 0.5))


@contextlib.asynccontextmanager
async def running(pub: Publisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(pub.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(cond: Callable[[], bool], within_s: float = 10.0) -> bool:
    for _ in range(int(within_s / 0.02)):
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


def check_delivery(got: list[tuple[str, bytes, bool]], expected: list[OutboundMessage]) -> None:
    """Every message arrived; duplicates carry the same bytes; first arrivals are in seq order
    per topic."""
    by_payload = {m.payload: m for m in expected}
    first: dict[bytes, str] = {}
    for topic, payload, _ in got:
        if topic == STATUS:
            continue
        assert payload in by_payload, f"unexpected message {payload!r}"
        assert by_payload[payload].topic == topic
        first.setdefault(payload, topic)
    assert set(first) == set(by_payload), f"lost: {len(set(by_payload) - set(first))}"
    for topic in TOPICS:
        seqs = [by_payload[p].seq for p, t in first.items() if t == topic]
        assert seqs == sorted(seqs), f"out of order on {topic}"


async def open_ob(tmp_path: Path) -> Outbox:
    return await Outbox.open(str(tmp_path / "o.db"), max_rows=100_000, max_age_s=3600)


async def test_everything_arrives_in_order_and_the_outbox_empties(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    sub = subscriber(broker, f"{BASE}/events/#")
    for protocol in ("auto", "3.1.1"):
        async with await open_ob(tmp_path / protocol) as ob:
            pub = make(broker.port, ob, protocol=protocol)
            msgs = batch(1, 300)
            await ob.append(msgs[:100])
            async with running(pub):
                await ob.append(msgs[100:])
                assert await pub.flush(20)
                assert await ob.depth() == 0
                got = await sub.until(300, 10)
            check_delivery(got, msgs)
            assert len(got) == 300
            assert pub.acked == pub.published == 300
            sub.messages.clear()


async def test_v5_publishes_carry_the_cloudevents_content_type(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker]) -> None:
    broker = mosquitto()
    seen: list[tuple[str, str | None]] = []
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"{BASE}/#", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: seen.append(
        (m.topic, getattr(m.properties, "ContentType", None)))
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        assert ready.wait(5)
        async with await open_ob(tmp_path) as ob, running(make(broker.port, ob)) as _:
            await ob.append(batch(1, 3))
            assert await until(lambda: len(seen) >= 4)
    finally:
        c.disconnect()
        c.loop_stop()
    assert (STATUS, None) in seen
    assert [ct for t, ct in seen if t != STATUS] == [CONTENT_TYPE] * 3


async def test_broker_restart_mid_stream_loses_nothing(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    """Stop the broker while messages flow, keep appending, start it on the same port."""
    broker = mosquitto(persistent=True)
    sub = subscriber(broker, f"{BASE}/events/#", persistent=True)
    msgs = batch(1, 3000)
    async with await open_ob(tmp_path) as ob:
        pub = make(broker.port, ob)
        async with running(pub):
            for i in range(0, 2000, 100):
                await ob.append(msgs[i:i + 100])
            await sub.until(100)
            broker.stop()
            assert await until(lambda: not pub.connected)
            for i in range(2000, 2500, 100):
                await ob.append(msgs[i:i + 100])
            assert await ob.depth() >= 500, "messages wait in the outbox while the broker is away"
            broker.start()
            await ob.append(msgs[2500:])
            assert await pub.flush(30), pub.last_error
            got = await sub.until(3000, 15, distinct=True)
    check_delivery(got, msgs)
    assert pub.connects == 2


async def test_broker_down_at_start_then_delivers_when_it_appears(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto(persistent=True)
    sub = subscriber(broker, f"{BASE}/events/#", persistent=True)  # session survives restart
    broker.stop()
    msgs = batch(1, 100)
    async with await open_ob(tmp_path) as ob:
        pub = make(broker.port, ob)
        async with running(pub) as task:
            await ob.append(msgs)
            assert await until(lambda: pub.last_error is not None)
            assert "refused" in (pub.last_error or "")
            assert not task.done() and not pub.connected
            broker.start()
            assert await pub.flush(20)
            got = await sub.until(100)
    check_delivery(got, msgs)


async def test_refused_port_keeps_retrying_with_an_actionable_error(tmp_path: Path) -> None:
    async with await open_ob(tmp_path) as ob:
        pub = make(free_port(), ob)
        async with running(pub) as task:
            await ob.append(batch(1, 5))
            assert await until(lambda: pub.last_error is not None)
            await asyncio.sleep(0.5)  # several attempts at this backoff
            assert not task.done(), "the publisher must not give up"
            assert "connection refused" in (pub.last_error or "")
            assert "mqtt.port" in (pub.last_error or "")
            assert not await pub.flush(0.1)
        assert await ob.depth() == 5, "nothing is lost while the broker is unreachable"


async def test_status_online_retained_and_offline_on_clean_stop(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    async with await open_ob(tmp_path) as ob:
        pub = make(broker.port, ob)
        async with running(pub):
            assert await until(lambda: pub.connected)
            await asyncio.sleep(0.1)
            late = subscriber(broker, STATUS)  # subscribes after: sees the retained value
            assert await late.until(1)
            assert late.snapshot()[0] == (STATUS, b"online", True)
    assert await late.until(2)
    assert late.snapshot()[1][1] == b"offline"
    after = subscriber(broker, STATUS)
    assert (await after.until(1))[0] == (STATUS, b"offline", True)


PUBLISHER = """
import asyncio, sys
from dataclasses import replace
from presence_gateway.core.config import MqttSettings
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.adapters.outbox import Outbox

async def main() -> None:
    async with await Outbox.open(sys.argv[2], max_rows=100, max_age_s=60) as ob:
        pub = Publisher(replace(MqttSettings(), port=int(sys.argv[1])), ob,
                        status_topic=sys.argv[3], online_payload=lambda: b"online",
                        offline_payload=b"offline")
        await pub.run()

asyncio.run(main())
"""


async def test_sigkilled_publisher_leaves_offline_as_its_will(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    sub = subscriber(broker, STATUS)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, str(broker.port), str(tmp_path / "o.db"), STATUS,
        cwd=ROOT)
    try:
        got = await sub.until(1, 15)
        assert got and got[0][1] == b"online"
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        got = await sub.until(2, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert got[1][1] == b"offline", "the broker published the will"
    after = subscriber(broker, STATUS)
    assert (await after.until(1))[0] == (STATUS, b"offline", True), "and retained it"


async def test_subscribe_handler_gets_commands_and_survives_its_own_exception(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    received: list[tuple[str, bytes]] = []

    def handler(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        if payload == b"boom":
            raise ValueError("handler bug")

    cmd = f"{BASE}/commands/#"
    sender = mqtt.Client(CallbackAPIVersion.VERSION2)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    events = subscriber(broker, f"{BASE}/events/#")
    try:
        async with await open_ob(tmp_path) as ob:
            pub = make(broker.port, ob)
            pub.subscribe(cmd, handler)  # before connect: subscribed on connect
            async with running(pub):
                assert await until(lambda: pub.connected)
                await asyncio.sleep(0.2)  # SUBACK
                sender.publish(f"{BASE}/commands/x", b"boom", qos=1)
                sender.publish(f"{BASE}/commands/y", b"ok", qos=1)
                assert await until(lambda: len(received) >= 2)
                await ob.append(batch(1, 3))  # still publishing after the handler raised
                assert await pub.flush(10)
                assert len(await events.until(3)) == 3
                broker.stop()  # subscriptions are renewed on reconnect
                broker.start()
                assert await until(lambda: pub.connected and pub.connects == 2)
                await asyncio.sleep(0.2)
                sender.publish(f"{BASE}/commands/z", b"again", qos=1)
                assert await until(lambda: len(received) >= 3)
    finally:
        sender.loop_stop()
    assert received == [(f"{BASE}/commands/x", b"boom"), (f"{BASE}/commands/y", b"ok"),
                        (f"{BASE}/commands/z", b"again")]


async def test_hung_broker_is_detected_by_keepalive_and_recovered(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    """SIGSTOP: the TCP port stays open but nothing answers; keepalive must notice."""
    broker = mosquitto()
    sub = subscriber(broker, f"{BASE}/events/#")
    async with await open_ob(tmp_path) as ob:
        settings = replace(MqttSettings(), port=broker.port, keepalive=1)
        pub = Publisher(settings, ob, status_topic=STATUS, online_payload=lambda: b"online",
                        offline_payload=b"offline", backoff=(0.1, 0.3))
        async with running(pub):
            assert await until(lambda: pub.connected)
            broker.pause()
            await ob.append(batch(1, 10))
            assert await until(lambda: not pub.connected, 10), "keepalive timeout not seen"
            broker.resume()
            assert await pub.flush(20), pub.last_error
    got = await sub.until(10)
    check_delivery(got, batch(1, 10))
