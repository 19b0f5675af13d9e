"""Shell: drains the durable outbox to MQTT at QoS 1, with a retained status and a last will.

Invariants:
- A row leaves the outbox only after the broker's PUBACK (`Outbox.delete`, batched) or when
  the broker rejects it for good (a v5 PUBACK failure code, an invalid topic): a rejected
  message would otherwise block the head of the queue forever; both are counted.
- Rows go out oldest first on one connection, at most `window` unacknowledged at a time
  (settings.max_inflight, lowered to the broker's v5 Receive Maximum). The window is refilled
  from inside the PUBACK callback (ack-clocked), so steady state costs no task switch per
  message; a single pump coroutine does the database I/O (read ahead, batched deletes). That
  data path is the `DrainSteps` mixin (publisher_drain.py); this module connects and recovers.
- Every connection starts clean: rows in flight when a connection died are sent again from
  the oldest undeleted row (same `id`: duplicates are possible, loss is not; consumers drop
  duplicates by id and order by `sequence`).
- Status: the will is the retained `offline_payload` at QoS 1, set before connect; after
  CONNACK the retained `online_payload()` is published at QoS 1; on a clean stop
  `stop_payload()` (made at the stop) is published explicitly (a normal DISCONNECT discards
  the will).
- Reconnects back off exponentially with jitter (0.5 s .. 30 s by default); each change of
  failure reason is logged once at WARNING with an actionable sentence, repeats at DEBUG.
- Failover (`mqtt.servers`): every new session goes to the next node; the backoff grows per
  full round of nodes. The client id is the same on every node (one gateway, one id, fleet
  wide) and sessions are clean, so no node holds state we need: the outbox is the session.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from presence_gateway.adapters.mqttlink import Link, explain_oserror, tls_context
from presence_gateway.adapters.outbox import Outbox, StoredMessage
from presence_gateway.adapters.paho_fast import FastAckClient, PackedProperties, new_props

# The data path's tuning constants live with it (publisher_drain.py), importable from here.
from presence_gateway.adapters.publisher_drain import ACK_BATCH as ACK_BATCH
from presence_gateway.adapters.publisher_drain import ACK_DELAY_S as ACK_DELAY_S
from presence_gateway.adapters.publisher_drain import FETCH as FETCH
from presence_gateway.adapters.publisher_drain import LOW_WATER as LOW_WATER
from presence_gateway.adapters.publisher_drain import DrainSteps
from presence_gateway.core.config import Endpoint, MqttSettings

CONTENT_TYPE = "application/cloudevents+json"
CONNACK_TIMEOUT_S = 10.0
Handler = Callable[[str, bytes], None]


class Publisher(DrainSteps):
    """Drains `outbox` to the broker in `settings`; see the module docstring."""

    def __init__(self, settings: MqttSettings, outbox: Outbox, *, status_topic: str,
                 online_payload: Callable[[], bytes], offline_payload: bytes,
                 stop_payload: Callable[[], bytes] | None = None,
                 logger: logging.Logger | None = None, content_type: str | None = CONTENT_TYPE,
                 backoff: tuple[float, float] = (0.5, 30.0), grace_s: float = 2.0) -> None:
        self.settings = settings
        self.outbox = outbox
        self.status_topic = status_topic
        self.online_payload = online_payload
        self.offline_payload = offline_payload  # the will
        self.stop_payload = stop_payload or (lambda: offline_payload)  # a clean stop's
        self.log = logger or logging.getLogger("presence_gateway.adapters.publisher")
        self.content_type = content_type
        self.backoff = backoff
        self.grace_s = grace_s
        # stats
        self.connected = False
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.connects = 0
        self.last_error: str | None = None
        # state
        self._protocol = (MQTTProtocolVersion.MQTTv311 if settings.protocol == "3.1.1"
                          else MQTTProtocolVersion.MQTTv5)
        self._subs: dict[str, tuple[Handler, int]] = {}
        self._link: Link | None = None
        self._props: Properties | None = None
        self._window = max(1, settings.max_inflight)
        # Failover: `mqtt.servers` are tried in turn; `server` is the node in use.
        self._endpoints = settings.endpoints()
        self._next_server = 0
        self.server: Endpoint = self._endpoints[0]
        self._reassert: asyncio.TimerHandle | None = None
        self._buffer: deque[StoredMessage] = deque()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox rowid
        self._acked: list[int] = []  # rowids acknowledged, not yet deleted
        self._acked_since = 0.0
        self._status_acks: dict[int, asyncio.Future[None]] = {}
        self._cursor = 0
        self._exhausted = False
        self._more = True
        self._stopping = False
        self._kick = asyncio.Event()
        outbox.add_listener(self._on_append)

    # -- public -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, drain, reconnect with backoff; until cancelled (then stop cleanly)."""
        tls = tls_context(self.settings)
        attempt = 0
        n = len(self._endpoints)
        while True:
            self.server = self._endpoints[self._next_server]
            ok = await self._session(tls)
            # Whatever ended the session, the next try goes to the next node: a node that
            # just failed is the least likely to answer. The backoff only grows once a whole
            # round of nodes has failed, so one dead node costs a jittered ~0.5 s, not 30 s.
            self._next_server = (self._next_server + 1) % n
            attempt = 0 if ok else attempt + 1
            await asyncio.sleep(self._delay(attempt // n))

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 (the agreed API; polls)
        """Wait until the outbox is empty and nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.outbox.size or self._inflight or self._acked:
            if time.monotonic() >= deadline:
                return False
            self._kick.set()
            await asyncio.sleep(0.02)
        return True

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Register a subscription (renewed on every connect); `handler` runs in the loop."""
        self._subs[topic] = (handler, qos)
        link = self._link
        if link is not None and self.connected:
            link.client.message_callback_add(topic, self._dispatcher(handler))
            link.client.subscribe(topic, qos)

    def publish_now(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Send an ephemeral message (e.g. a peer summary) if connected; never stored.

        For data whose value is gone by the time a broker comes back; events go through the
        outbox instead. Returns False when not connected (the message is dropped)."""
        link = self._link
        if link is None or not self.connected:
            return False
        link.client.publish(topic, payload, qos, retain)
        return True

    # -- one connection ---------------------------------------------------------------------
    async def _session(self, tls: ssl.SSLContext | None) -> bool:
        """One connection from connect to close; True if it reached CONNACK."""
        await self._flush_acks()
        link = Link(self._make_client(tls), asyncio.get_running_loop())
        link.on_closed = self._kick.set
        self._link = link
        try:
            failure = await self._open(link)
            if failure is not None:
                self._fail(failure)
                return False
            self._up(link)
            try:
                await self._pump(link)
            except asyncio.CancelledError:
                await self._close_gracefully(link)
                raise
            self._fail(link.closed.result())
            return True
        finally:
            self.connected = False
            self._link = None
            if self._reassert is not None:
                self._reassert.cancel()
                self._reassert = None
            link.detach()
            self._reset_flight()

    async def _open(self, link: Link) -> str | None:
        """Connect and wait for CONNACK; returns None when connected, else why not."""
        s, ep = self.settings, self.server
        try:
            await link.connect(ep.host, ep.port, s.keepalive, self._connect_props())
        except OSError as exc:
            return explain_oserror(exc, ep.host, ep.port)
        waits: list[asyncio.Future[Any]] = [link.connack, link.closed]
        await asyncio.wait(waits, timeout=CONNACK_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not link.connack.done():
            tls_failure = link.tls_failure()
            if tls_failure is not None:  # a TLS refusal: the MQTT version is not the problem
                return tls_failure
            self._toggle_protocol()
            return (link.closed.result() if link.closed.done() else
                    f"no CONNACK from {ep.host}:{ep.port} within {CONNACK_TIMEOUT_S:.0f} s"
                    " (is it an MQTT broker? is it hung?)")
        rc, props = link.connack.result()
        if not rc.is_failure:
            limit = getattr(props, "ReceiveMaximum", None) if props is not None else None
            self._window = max(1, min(s.max_inflight, limit or s.max_inflight))
            return None
        return self._refused(rc)

    def _reassert_online(self, link: Link) -> None:
        self._reassert = None
        if link is self._link and self.connected and not link.closed.done():
            self._publish_status(link, self.online_payload())
            # A cluster may store the old node's will AFTER our `online` (NATS 2.9 orders its
            # replicated retained store apart from live delivery): keep saying `online` now
            # and then, so the retained status is right within 4 keepalives whatever the race.
            self._reassert = link.loop.call_later(4.0 * self.settings.keepalive,
                                                  self._reassert_online, link)

    def _toggle_protocol(self) -> None:
        """In `auto` mode, alternate v5 and 3.1.1 after a connect without CONNACK: some
        3.1.1-only brokers (e.g. amqtt) cannot parse a v5 CONNECT and never answer, rather
        than refusing it with "unsupported protocol version"."""
        if self.settings.protocol != "auto":
            return
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        self._protocol = MQTTProtocolVersion.MQTTv311 if v5 else MQTTProtocolVersion.MQTTv5
        self.log.info("no CONNACK with MQTT %s; trying %s next", "5" if v5 else "3.1.1",
                      "3.1.1" if v5 else "5")

    def _refused(self, rc: ReasonCode) -> str:
        name = rc.getName()
        if name == "Unsupported protocol version" and self._protocol == MQTTProtocolVersion.MQTTv5 \
                and self.settings.protocol == "auto":
            self._protocol = MQTTProtocolVersion.MQTTv311
            self.log.info("MQTT broker refused v5; falling back to MQTT 3.1.1")
            return "broker does not speak MQTT v5; retrying with 3.1.1"
        if name in ("Bad user name or password", "Not authorized"):
            return (f"bad credentials: broker answered '{name}' (check mqtt.username and the"
                    " password source)")
        return f"broker refused the connection: {name}"

    def _up(self, link: Link) -> None:
        self.connected = True
        self.connects += 1
        self.log.info("MQTT connected to %s:%d (%s)%s", self.server.host, self.server.port,
                      "v5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1",
                      f" after: {self.last_error}" if self.last_error else "")
        self.last_error = None
        self._publish_status(link, self.online_payload())
        if len(self._endpoints) > 1 and self.connects > 1:
            # After a failover, the node we left may still publish our will (`offline`,
            # retained) once it notices we are gone: at the latest 1.5 keepalives from now.
            # Say `online` again after that, so the retained status ends up right.
            self._reassert = link.loop.call_later(1.5 * self.settings.keepalive + 1.0,
                                                  self._reassert_online, link)
        for topic, (handler, qos) in self._subs.items():
            link.client.message_callback_add(topic, self._dispatcher(handler))
            link.client.subscribe(topic, qos)

    async def _close_gracefully(self, link: Link) -> None:
        """On cancellation: let in-flight finish (grace), status offline, DISCONNECT."""
        self._stopping = True
        try:
            deadline = time.monotonic() + self.grace_s
            while self._inflight and not link.closed.done() and time.monotonic() < deadline:
                await asyncio.wait([link.closed], timeout=0.02)
            await self._flush_acks()
            if link.closed.done():
                return
            ack = self._publish_status(link, self.stop_payload())
            waits: list[asyncio.Future[Any]] = [ack, link.closed]
            await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            link.client.disconnect()
            await asyncio.wait([link.closed], timeout=1.0)
        finally:
            self._stopping = False

    # -- paho callbacks (run in the loop thread) --------------------------------------------
    def _dispatcher(self, handler: Handler) -> Callable[[Client, Any, MQTTMessage], None]:
        def dispatch(client: Client, userdata: Any, msg: MQTTMessage) -> None:
            try:
                payload = msg.payload
                handler(msg.topic, payload if isinstance(payload, bytes) else bytes(payload))
            except Exception:
                self.log.exception("subscription handler for %s failed", msg.topic)
        return dispatch

    # -- helpers ----------------------------------------------------------------------------
    def _make_client(self, tls: ssl.SSLContext | None) -> Client:
        s = self.settings
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = FastAckClient(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                               protocol=self._protocol, clean_session=None if v5 else True,
                               reconnect_on_failure=False)
        client.connect_timeout = 5.0
        # Our window is the limit; paho's own (0 = none) must not queue behind it.
        client.max_inflight_messages_set(0)
        client.will_set(self.status_topic, self.offline_payload, qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, s.password)
        if tls is not None:
            client.tls_set_context(tls)
        client.on_publish = self._on_publish
        self._props = PackedProperties(self.content_type) if v5 and self.content_type else None
        return client

    def _connect_props(self) -> Properties | None:
        if self._protocol != MQTTProtocolVersion.MQTTv5:
            return None
        props = new_props(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0  # the outbox is our session: start clean every time
        return props

    def _publish_status(self, link: Link, payload: bytes) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = link.loop.create_future()
        info = link.client.publish(self.status_topic, payload, 1, True)
        self._status_acks[info.mid] = fut
        return fut

    def _fail(self, reason: str) -> None:
        ep = self.server
        if reason != self.last_error:
            self.log.warning("MQTT %s:%d: %s; retrying with backoff%s", ep.host, ep.port,
                             reason, " on the next server" if len(self._endpoints) > 1 else "")
        else:
            self.log.debug("MQTT %s:%d: %s (again)", ep.host, ep.port, reason)
        self.last_error = reason

    def _delay(self, attempt: int) -> float:
        lo, hi = self.backoff
        d = min(hi, lo * (2.0 ** min(attempt, 16)))
        return d / 2 + random.uniform(0, d / 2)  # equal jitter: spread a fleet's reconnects
