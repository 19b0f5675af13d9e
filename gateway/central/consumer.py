"""Central consumer shell: partition leases, one persistent MQTT session per partition, commits.

How consumers share a fleet (docs/fleet.md): stores hash into `partitions` (the gateway's
v2 topic carries the token, `presence/v2/p007/...`). Each partition is consumed through ONE
persistent MQTT session whose client id names the partition, not the instance
(`central-{prefix}-p007`, clean session off): the broker keeps that session's subscription
and queues its QoS 1 messages while nobody holds it, so the session is the partition's
durable cursor. Instances agree who holds which partition through leases in the database
(rendezvous hashing over the live members, central/model.owner_of); an instance that dies
stops renewing, its leases expire, another instance claims them and resumes the session on
any node. Broker-side client-id takeover is the second fence: a session has one connection.

Invariants:
- A delivery is acknowledged (manual PUBACK) only after its effect is committed, or when it
  is a duplicate of something committed, or unusable; anything held for order is
  acknowledged when it is released and committed. A consumer killed at any point therefore
  loses nothing (the broker redelivers) and applies nothing twice (writes keyed by event id).
- All in-memory state of a partition (queue, held events) dies with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from presence_gateway.adapters.mqttlink import Link, explain_oserror
from presence_gateway.adapters.paho_fast import ChunkedClient
from presence_gateway.central.db import CentralDb, Commit
from presence_gateway.central.model import (
    RESEND_COMMAND,
    Event,
    Output,
    Partition,
    ResendRequest,
    Status,
    owner_of,
    parse,
    partitions,
)
from presence_gateway.core.commands import sign
from presence_gateway.core.config import Endpoint
from presence_gateway.core.resend import MAX_SPAN

BATCH = 500  # deliveries per commit at most
TICK_S = 0.2  # how often held events are re-examined when nothing arrives
ResendHook = Callable[[ResendRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Options:
    brokers: tuple[Endpoint, ...]
    prefix: str = "presence"
    partitions: int = 16
    group: str = "central"
    instance: str = ""
    lease_s: float = 10.0
    gap_timeout_s: float = 10.0
    resend_after_s: float = 2.0
    keepalive: int = 10
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # offers.command_key of the fleet: with it, a hole is asked for with a sealed
    # `events.resend` command (its topic has a '.', which NATS 2.9's MQTT refuses).
    command_key: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class Counters:
    applied: int = 0
    duplicates: int = 0
    unusable: int = 0
    gaps: int = 0
    sessions: int = 0


async def log_resend(request: ResendRequest) -> None:
    """The default gap hook: log the hole (the sealed command itself is sent by the worker
    when `command_key` is set; a hook may also page someone, or count)."""
    logging.getLogger("presence_gateway.central").warning(
        "gap in %s/%s: sequences %d..%d missing; asking for a resend if a command key is set",
        request.store, request.gateway, request.from_sequence, request.to_sequence)


def resend_command(key: bytes, request: ResendRequest) -> bytes:
    """The sealed `events.resend` command for one hole (core/commands.py's wire format)."""
    last = min(request.to_sequence, request.from_sequence + MAX_SPAN - 1)
    return sign(key, {"command": RESEND_COMMAND, "target": f"{request.store}/{request.gateway}",
                      "id": f"central-{uuid.uuid4().hex[:16]}", "issued_at": int(time.time()),
                      "from_sequence": request.from_sequence, "to_sequence": last})


class PartitionWorker:
    """Consumes one partition through its persistent session until cancelled."""

    def __init__(self, partition: str, opts: Options, db: CentralDb, counters: Counters,
                 on_resend: ResendHook = log_resend) -> None:
        self.partition = partition
        self.opts = opts
        self.db = db
        self.counters = counters
        self.on_resend = on_resend
        self.log = logging.getLogger(f"presence_gateway.central.{partition}")
        self.state = Partition(gap_timeout_s=opts.gap_timeout_s,
                               resend_after_s=opts.resend_after_s)
        self.client_id = f"{opts.group}-{opts.prefix.replace('/', '-')}-{partition}"
        self.topic = f"{opts.prefix}/v2/{partition}/#"
        self.connected = asyncio.Event()

    async def run(self) -> None:
        n = len(self.opts.brokers)
        index = int(self.partition[1:]) % n  # spread partitions over the nodes
        attempt = 0
        while True:
            try:
                ok = await self._session(self.opts.brokers[index % n])
            except Exception:  # a database error: drop the session, its deliveries come back
                self.log.exception("partition %s: session failed; reconnecting", self.partition)
                ok = False
            index += 1
            attempt = 0 if ok else attempt + 1
            d = min(5.0, 0.2 * 2 ** min(attempt // n, 5))
            await asyncio.sleep(d / 2 + random.uniform(0, d / 2))

    async def _session(self, ep: Endpoint) -> bool:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[MQTTMessage] = asyncio.Queue()
        # chunked reads: one system call for a burst of PUBLISH packets (adapters/paho_fast)
        client = ChunkedClient(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=MQTTProtocolVersion.MQTTv311, clean_session=False,
                        reconnect_on_failure=False)
        client.manual_ack_set(True)
        if self.opts.username:
            client.username_pw_set(self.opts.username, self.opts.password)
        client.on_message = lambda c, u, msg: queue.put_nowait(msg)
        link = Link(client, loop)
        try:
            try:
                await link.connect(ep.host, ep.port, self.opts.keepalive, None)
            except OSError as exc:
                self.log.debug("%s", explain_oserror(exc, ep.host, ep.port))
                return False
            waits: list[asyncio.Future[Any]] = [link.connack, link.closed]
            await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if not link.connack.done() or link.connack.result()[0].is_failure:
                self.log.info("no session on %s:%d", ep.host, ep.port)
                return False
            suback: asyncio.Future[Any] = loop.create_future()

            def subscribed(_c: Any, _u: Any, _mid: int, codes: list[Any], *_p: Any) -> None:
                if not suback.done():
                    suback.set_result(all(not getattr(c, "is_failure", False) for c in codes))

            client.on_subscribe = subscribed
            client.subscribe(self.topic, 1)
            waits = [suback, link.closed]
            await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if not suback.done() or not suback.result():
                # NATS answers 0x80 when it could not create the subscription's JetStream
                # consumer (e.g. while a stream leader is elected): that is no subscription.
                self.log.info("subscription refused or unanswered on %s:%d", ep.host, ep.port)
                return False
            self.counters.sessions += 1
            await self.db.consuming(self.partition, self.opts.instance, time.time())
            self.connected.set()
            self.log.info("partition %s consumed via %s:%d", self.partition, ep.host, ep.port)
            try:
                await self._consume(link, queue)
            except asyncio.CancelledError:
                # A clean DISCONNECT keeps the session (clean session off): the next holder
                # resumes it; whatever we held unacknowledged is redelivered to it.
                client.disconnect()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([link.closed], timeout=1.0)
                raise
            self.log.info("partition %s: %s", self.partition, link.closed.result())
            return True
        finally:
            self.connected.clear()
            link.detach()
            self.state.reset()

    async def _consume(self, link: Link, queue: asyncio.Queue[MQTTMessage]) -> None:
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[Any] = link.closed
        while not closed.done():
            batch: list[MQTTMessage] = []
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait([getter, closed], timeout=TICK_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    batch.append(getter.result())
                else:
                    getter.cancel()
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            if closed.done():
                return
            await self._step(link, batch, loop.time())

    async def _step(self, link: Link, batch: list[MQTTMessage], now: float) -> None:
        out = Output()
        commit = Commit()
        for msg in batch:
            payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
            # Only a QoS 1/2 delivery is acknowledged; a QoS 0 one (a gateway's peer sync under
            # the same partition) has no packet id, and a PUBACK for id 0 is a protocol error
            # that makes the broker drop the session (tag 0: nothing to acknowledge).
            tag = msg.mid if msg.qos else 0
            item = parse(msg.topic, payload, tag)
            if item is None:
                self.counters.unusable += 1
                out.tags.append(tag)
            elif isinstance(item, Status):
                commit.statuses.append(item)
                out.tags.append(tag)
            else:
                if not self.state.known(item.key):
                    self.state.start(item.key, await self.db.position(item.key))
                self.state.offer(item, now, out)
        self.state.tick(now, out)
        commit.events, commit.gaps = out.events, out.gaps
        for ev in out.events:
            self._note(commit, ev)
        if commit.events or commit.statuses or commit.gaps:
            dup = await self.db.commit(commit)
            self.counters.duplicates += dup
            self.counters.applied += len(commit.events) - dup
            self.counters.gaps += sum(g.size for g in commit.gaps)
        if not link.closed.done():
            for tag in out.tags:  # only now: the effect of each is committed
                if tag:
                    link.client.ack(tag, 1)
        for request in out.resend:
            if self.opts.command_key and not link.closed.done():
                topic = request.topic(self.opts.prefix, partitions=self.opts.partitions)
                link.client.publish(topic, resend_command(self.opts.command_key, request), 1)
            try:
                await self.on_resend(request)
            except Exception:  # a resend is a courtesy: never stop consuming for it
                self.log.exception("resend hook failed for %s/%s", request.store,
                                   request.gateway)

    def _note(self, commit: Commit, ev: Event) -> None:
        nxt = self.state.next_sequence(ev.key)
        if nxt is not None:
            commit.positions[ev.key] = (ev.store, ev.gateway, nxt - 1)
        commit.note(ev)


class Coordinator:
    """Holds this instance's share of the partitions, through leases in the database."""

    def __init__(self, opts: Options, db: CentralDb, on_resend: ResendHook = log_resend) -> None:
        self.opts = opts
        self.db = db
        self.on_resend = on_resend
        self.counters = Counters()
        self.workers: dict[str, tuple[PartitionWorker, asyncio.Task[None]]] = {}
        self.log = logging.getLogger("presence_gateway.central")
        self._all = partitions(opts.partitions)

    async def run(self) -> None:
        """Until cancelled; on cancellation stop every worker and hand the leases back."""
        o = self.opts
        renewed = time.monotonic()
        try:
            while True:
                try:
                    await self._rebalance(time.time())
                    renewed = time.monotonic()
                except Exception as exc:  # the database is away: keep trying
                    self.log.warning("lease renewal failed: %s", exc)
                    if time.monotonic() - renewed > 0.8 * o.lease_s and self.workers:
                        # Our leases are about to expire: others will take the partitions.
                        self.log.warning("leases expiring; stopping %d partitions",
                                         len(self.workers))
                        for p in list(self.workers):
                            await self._stop(p)
                await asyncio.sleep(o.lease_s / 4)
        finally:
            await asyncio.gather(*(self._stop(p) for p in list(self.workers)),
                                 return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.shield(self.db.leave(o.instance))

    async def _rebalance(self, now: float) -> None:
        o = self.opts
        members = await self.db.heartbeat(o.instance, now, o.lease_s)
        held = await self.db.renew(o.instance, now, o.lease_s)
        for p in [p for p in self.workers if p not in held]:
            self.log.warning("lease of %s lost; stopping it", p)
            await self._stop(p)
        desired = {p for p in self._all if owner_of(p, members) == o.instance}
        for p in [p for p in self.workers if p not in desired]:
            await self._stop(p)  # a new member's share: hand it over cleanly
            await self.db.release(p, o.instance)
        for p in sorted(desired - set(self.workers)):
            if await self.db.claim(p, o.instance, now, o.lease_s):
                worker = PartitionWorker(p, o, self.db, self.counters, self.on_resend)
                self.workers[p] = (worker, asyncio.create_task(worker.run(), name=f"part-{p}"))

    def held(self) -> int:
        """Events held for order across this instance's partitions (for tests, stats)."""
        return sum(w.state.held() for w, _ in self.workers.values())

    async def _stop(self, partition: str) -> None:
        _, task = self.workers.pop(partition)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
