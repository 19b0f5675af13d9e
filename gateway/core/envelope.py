"""Events -> outbound messages: CloudEvents 1.0 structured JSON, topic, per-gateway sequence.

Invariants:
- Every message has a unique, time-sortable `id` (UUIDv7 from the event time plus randomness)
  and a per-gateway `sequence` that increases by exactly one per message, so a consumer can
  drop duplicates (same id) and see gaps (missing sequence numbers).
- Topics: `{prefix}/v1/{store}/{gateway}/events/{type}` for events,
  `{prefix}/v1/{store}/{gateway}/state/{suffix}` for retained state and
  `{prefix}/v1/{store}/{gateway}/commands/{name}/result` for command results; status is
  `.../status`.
- The payload is serialised once, here, with orjson; nothing downstream re-encodes it.
"""

from __future__ import annotations

import os
import random
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from presence_gateway.core.events import Event
from presence_gateway.core.model import OutboundMessage, fast_constructor

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_BASE = "urn:presence-gateway:schema:v1:"


def rfc3339(ts: float) -> str:
    """Seconds since the epoch -> '2023-02-28T09:15:02.125Z' (UTC, millisecond precision)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def uuid7(ts: float, rand: int) -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    ms = max(0, int(ts * 1000)) & 0xFFFF_FFFF_FFFF
    value = ((ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
             | (rand & 0x3FFF_FFFF_FFFF_FFFF))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _seeded_bits() -> Callable[[int], int]:
    # Ids need uniqueness, not secrecy: a Mersenne Twister seeded from the OS costs ~0.1 µs
    # a draw where os.urandom costs a system call per event.
    return random.Random(os.urandom(32)).getrandbits


_new_message: Callable[..., OutboundMessage] = fast_constructor(OutboundMessage)


def partition_of(store_id: str, partitions: int) -> str:
    """The v2 topic token of a store's partition, e.g. `p007`: crc32 is stable across
    processes and languages (Python's hash() is salted per process)."""
    return f"p{zlib.crc32(store_id.encode()) % max(1, partitions):03d}"


class Topics:
    """The topic tree of one gateway (and its store).

    v1: `{prefix}/v1/{store}/{gateway}/events/{type}`, one topic per event type.
    v2: `{prefix}/v2/{partition}/{store}/{gateway}/events`, one topic per gateway: MQTT orders
    messages per topic, so a whole gateway's stream stays in order through a cluster, and a
    consumer owning a partition sees every event of its stores (docs/fleet.md). v2 topics
    also carry no `.`, which NATS 2.9's MQTT listener refuses in a topic."""

    def __init__(self, prefix: str, store_id: str, gateway_id: str, *, layout: str = "v1",
                 partitions: int = 16) -> None:
        self.v2 = layout == "v2"
        part = f"/{partition_of(store_id, partitions)}" if self.v2 else ""
        self.store = f"{prefix}/{layout}{part}/{store_id}"
        self.base = f"{self.store}/{gateway_id}"
        self.status = f"{self.base}/status"
        self.commands = f"{self.base}/commands"

    def event(self, event_type: str) -> str:
        return f"{self.base}/events" if self.v2 else f"{self.base}/events/{event_type}"

    def state(self, suffix: str) -> str:
        return f"{self.base}/state/{suffix}"


class Envelope:
    """Wraps domain events for the wire; owns the per-gateway sequence counter."""

    def __init__(self, *, topics: Topics, source: str, qos: int = 1, next_seq: int = 1,
                 rand: Callable[[int], int] | None = None) -> None:
        self.topics = topics
        self.source = source
        self.qos = qos
        self.next_seq = next_seq
        self._rand = rand or _seeded_bits()
        self._sec = -1
        self._prefix = ""

    def _time(self, ts: float) -> str:
        """rfc3339(ts), with the formatted second cached: events come in bursts."""
        sec = int(ts // 1)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{int((ts - sec) * 1000):03d}Z"

    def wrap(self, event: Event) -> OutboundMessage:
        seq = self.next_seq
        self.next_seq = seq + 1
        msg_id = uuid7(event.time, self._rand(74))
        etype = event.type.value
        body: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": msg_id,
            "source": self.source,
            "type": etype,
            "time": self._time(event.time),
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_BASE + etype,
            "sequence": seq,
            "data": event.payload(),
        }
        subject = event.subject
        if subject is not None:
            body["subject"] = subject
        suffix = event.topic_suffix
        if suffix is not None and suffix.startswith("commands/"):
            topic = f"{self.topics.base}/{suffix}"  # a command's result beside the command
        elif event.retained and suffix:
            topic = self.topics.state(suffix)
        else:
            topic = self.topics.event(etype)
        return _new_message(msg_id, seq, topic, orjson.dumps(body), self.qos, event.retained,
                            event.time, event.anonymous)
