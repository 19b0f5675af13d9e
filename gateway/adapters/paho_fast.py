"""Two hot spots of paho-mqtt's Python client, made cheap for the publisher's one use of them.

- PUBLISH properties: paho serialises a `Properties` object again on every publish (~15 µs,
  a fifth of the whole per-message cost); `PackedProperties` serialises the content type once.
- Reads and writes: paho reads a packet in three system calls and writes each packet with
  one; `ChunkedClient` reads what the broker sent in one and serves paho's small reads from
  it, and sends the queued packets together.
- PUBACK: paho decodes every acknowledgement into a new `ReasonCode` and a new `Properties`
  object (two `ReasonCode`s over MQTT 5), even for a message accepted without properties,
  which is almost every one: 27 % of the publish path (profile of 20k QoS 1 messages into
  Mosquitto). `FastAckClient` hands those (a bare mid, or a mid with a success-class reason
  code and no properties) to the same `on_publish` path with shared reason codes and one
  shared empty property set, and leaves every other acknowledgement (a failure code,
  properties, PUBCOMP) to paho.

Both rely on paho internals (`Properties.pack`, the client's `_in_packet`, `_out_messages`,
`_out_message_mutex`, `_do_on_publish`, `_handle_pubackcomp`): checked at import; when a paho
release renames them, the plain paho paths are used (`FAST_ACK` False) and nothing breaks,
it only costs more. Tests run the publisher against a real Mosquitto over MQTT 5 and 3.1.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

# paho leaves Properties untyped; these typed handles keep mypy --strict honest.
new_props: Callable[[int], Properties] = Properties
_props_init: Callable[[Properties, int], None] = Properties.__init__
_props_pack: Callable[[Properties], bytes] = Properties.pack


class PackedProperties(Properties):
    """PUBLISH properties serialised once (the content type of every event)."""

    def __init__(self, content_type: str) -> None:
        _props_init(self, PacketTypes.PUBLISH)
        self.ContentType = content_type
        object.__setattr__(self, "_packed", _props_pack(self))

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "_packed")
        return packed


# Shared, never mutated by paho or by the publisher's callback (it reads `is_failure`): one
# ReasonCode per success-class code a broker sends without properties (0x00 success, 0x10 "no
# matching subscribers": Mosquitto's answer to every MQTT 5 publish nobody subscribes to).
_ACCEPTED = {code: ReasonCode(PacketTypes.PUBACK, identifier=code) for code in (0x00, 0x10)}
_NO_PROPERTIES = new_props(PacketTypes.PUBACK)
FAST_ACK = all(hasattr(Client, name) for name in ("_handle_pubackcomp", "_do_on_publish"))


# One read from the socket takes up to this much; paho then takes its packets from it. One
# write sends the queued packets up to about this much at once.
READ_CHUNK = 65536
WRITE_CHUNK = 65536
FAST_READ = all(hasattr(Client, name) for name in ("_sock_recv", "_sock_close"))
FAST_WRITE = all(hasattr(Client, name) for name in ("_packet_write", "_sock_send"))
_PACKET_KEYS = ("command", "qos", "pos", "to_process", "packet")
_PUBLISH, _DISCONNECT = 0x30, 0xE0


class ChunkedClient(Client):
    """paho's Client reading and writing the socket in chunks.

    Reads: paho reads a packet in three `recv` calls (its first byte, the length bytes one
    at a time, the rest), each a system call of ~3 µs: a PUBACK, 4 bytes, cost three (11,121
    calls for the 3,546 acknowledgements of a replayed day). Here one `recv` takes whatever
    the broker has sent and paho's small reads are served from it. Bytes that paho has not
    asked for when `loop_read` returns (`buffered()`) are read by the caller without waiting
    for the socket (adapters/mqttlink.py `Link._read`): it will not signal them again. The
    buffer belongs to one connection: it is emptied when paho closes the socket (also before
    a reconnect).

    Writes: paho sends each queued packet with a `send` of its own (~4 µs each); a window of
    20 messages in flight queues them together. Here the queued packets go out in one `send`,
    up to WRITE_CHUNK, as far as the first that paho must see complete on its own (a QoS 0
    PUBLISH, whose `on_publish` fires once it is written, or a DISCONNECT); paho's own loop
    then goes on from where that send stopped (the rest, a partial write, a full socket)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._rbuf = bytearray()  # before paho's __init__, which may close a socket
        super().__init__(*args, **kwargs)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not FAST_READ:
            return super()._sock_recv(bufsize)
        buf = self._rbuf
        if not buf:
            data: bytes = super()._sock_recv(READ_CHUNK)  # raises BlockingIOError when none
            if len(data) <= bufsize:
                return data  # also b"" (the broker closed): paho sees it as before
            buf += data
        out = bytes(buf[:bufsize])
        del buf[:bufsize]  # O(1) from a bytearray's front
        return out

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._rbuf)

    def _sock_close(self) -> None:
        self._rbuf.clear()  # what is left belonged to the connection that ends here
        super()._sock_close()

    def _packet_write(self) -> MQTTErrorCode:
        queue = getattr(self, "_out_packet", None)
        if FAST_WRITE and queue is not None and len(queue) > 1 and all(
                k in queue[0] for k in _PACKET_KEYS):
            take = []
            size = 0
            for packet in queue:
                kind = packet["command"] & 0xF0
                if (kind == _PUBLISH and packet["qos"] == 0) or kind == _DISCONNECT \
                        or size >= WRITE_CHUNK:
                    break
                take.append(packet)
                size += packet["to_process"]
            if len(take) > 1:
                data = b"".join(p["packet"][p["pos"]:] for p in take)
                try:
                    sent: int = self._sock_send(data)
                except (AttributeError, ValueError):
                    return MQTTErrorCode.MQTT_ERR_SUCCESS  # as paho: no socket, keep them
                except BlockingIOError:
                    return MQTTErrorCode.MQTT_ERR_AGAIN
                except OSError:
                    return MQTTErrorCode.MQTT_ERR_CONN_LOST
                for packet in take:  # what the send took, packet by packet, in order
                    if sent <= 0:
                        break
                    part = min(sent, packet["to_process"])
                    packet["to_process"] -= part
                    packet["pos"] += part
                    sent -= part
                    if packet["to_process"] == 0:
                        queue.popleft()  # written whole: nothing more for paho to do
        result: MQTTErrorCode = super()._packet_write()  # the rest, and paho's bookkeeping
        return result


class FastAckClient(ChunkedClient):
    """paho's Client with plain PUBACKs (mid, maybe a success-class reason code, no
    properties) handled without building objects per acknowledgement, reading in chunks."""

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        if FAST_ACK and cmd == "PUBACK":
            packet = getattr(self, "_in_packet", {}).get("packet")
            reason = None
            if isinstance(packet, bytes | bytearray):
                n = len(packet)
                # 2 bytes: success (any protocol); 3: + reason code; 4: + empty properties
                if n == 2:
                    reason = _ACCEPTED[0x00]
                elif n == 3 or (n == 4 and packet[3] == 0):
                    reason = _ACCEPTED.get(packet[2])
            if reason is not None:
                mid = (packet[0] << 8) | packet[1]  # type: ignore[index]
                with self._out_message_mutex:  # as paho's own handler
                    if mid in self._out_messages:
                        rc: MQTTErrorCode = self._do_on_publish(mid, reason, _NO_PROPERTIES)
                        return rc
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        result: MQTTErrorCode = super()._handle_pubackcomp(cmd)
        return result
