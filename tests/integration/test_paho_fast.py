"""The publisher's paho fast paths against a real Mosquitto: bare PUBACKs (every accepted
message) skip paho's per-acknowledgement objects, anything else (a refusal with its reason
code) still goes through paho and is counted as rejected; over MQTT 5 and 3.1.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from paho.mqtt import _packet

from presence_gateway.adapters import paho_fast
from presence_gateway.adapters.mosquitto import LocalBroker, find_mosquitto
from tests.integration.test_publisher import BASE, make, open_ob, running

ALLOWED, REFUSED = f"{BASE}/events/a", f"{BASE}/events/refused"


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """Anonymous clients may publish anywhere but to REFUSED (Mosquitto answers an MQTT 5
    PUBACK with reason code 0x87 there, and acknowledges silently over 3.1.1)."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (Debian: apt-get install mosquitto)")
    acl = tmp_path / "acl"
    acl.write_text(f"topic write {BASE}/status\ntopic write {ALLOWED}\n")
    broker = LocalBroker(workdir=str(tmp_path))
    with broker.conf.open("a") as conf:
        conf.write(f"acl_file {acl}\n")
    broker.start()
    yield broker
    broker.close()  # the broker process must not outlive the test


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_bare_acks_take_the_fast_path_and_refusals_still_count(
        protocol: str, tmp_path: Path, refusing_broker: LocalBroker,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from presence_gateway.core.model import OutboundMessage

    assert paho_fast.FAST_ACK, "paho's internals changed: the fast path is off"
    decoded: list[bytes] = []
    original: Callable[..., object] = _packet.decode_puback

    def spy(header: int, packet: bytes, protocol_: object) -> object:
        decoded.append(bytes(packet))
        return original(header, packet, protocol_)

    monkeypatch.setattr(_packet, "decode_puback", spy)
    msgs = [OutboundMessage(id=f"id-{s}", seq=s, topic=REFUSED if s % 10 == 0 else ALLOWED,
                            payload=b'{"seq":%d}' % s, created=float(s)) for s in range(1, 201)]
    async with await open_ob(tmp_path / protocol) as ob:
        pub = make(refusing_broker.port, ob, protocol=protocol)
        await ob.append(msgs)
        async with running(pub):
            assert await pub.flush(20)
        assert pub.acked == 200 and await ob.depth() == 0
    if protocol == "5":
        # the 20 refusals carry a failure code: paho decoded them, and they count; the rest
        # (0x10: no subscriber) took the fast path
        assert pub.rejected == 20
        assert len(decoded) >= 20 and all(p[2] >= 0x80 for p in decoded)
    else:
        # 3.1.1 has no reason codes: every PUBACK is bare, none went through paho's decoder
        assert pub.rejected == 0 and decoded == []
