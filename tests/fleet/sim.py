"""Simulated gateways for the fleet tests and the fleet benchmark: each one is a real outbox
and a real publisher (v2 topics, `mqtt.servers` failover) replaying a recorded-shape event
stream (visits, links, footfall, occupancy, stats) through the real envelope. Cheap: no
radios, no pipeline, so a test can run dozens in one event loop."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import orjson

from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.core import events as E
from presence_gateway.core.config import Endpoint, MqttSettings
from presence_gateway.core.envelope import Envelope, Topics


def stream(store: str, gateway: str, visits: int, t0: float = 1_700_000_000.0) -> list[E.Event]:
    """A store's day in miniature: per visit started/(linked)/ended; every 5 visits the
    footfall, the retained occupancy and the gateway stats."""
    out: list[E.Event] = []
    for i in range(visits):
        t = t0 + i * 7.0
        vid, dev = f"{gateway}-v{i}", f"{i:016x}"
        out.append(E.VisitStarted(time=t, visit_id=vid, device=dev, radio="ble", first_seen=t,
                                  observations=3, rssi=-60.0))
        if i % 4 == 0:
            out.append(E.IdentityLinked(time=t + 1, visit_id=vid, device=dev,
                                        customer_id=f"c{i}", method="irk"))
        out.append(E.VisitEnded(time=t + 5, visit_id=vid, device=dev, radio="ble",
                                first_seen=t, last_seen=t + 5, duration_s=5.0, observations=9,
                                zones=("entrance",), dwell_s=5.0, classification="visitor",
                                reason="timeout", max_rssi=-50.0))
        if i % 5 == 4:
            counts = {"present": 3, "present_now": 3, "present_interval": [1.2, 4.8],
                      "entries": 5, "exits": 4,
                      "passers_by": 1, "median_dwell_s": 5.0, "zones": {}}
            out.append(E.FootfallCounted(time=t + 6, store=store, counts=counts))
            out.append(E.OccupancyChanged(time=t + 6, store=store, state_topic="occupancy",
                                          state={"present": 3}))
            out.append(E.GatewayStats(time=t + 6, gateway=gateway, counts={
                "observations": i, "by_radio": {"ble": i}, "by_kind": {}, "rejects": {},
                "queue_drops": 0, "outbox_depth": 0, "outbox_dropped": 0}))
    return out


class SimGateway:
    def __init__(self, store: str, gateway: str, *, prefix: str, servers: list[Endpoint],
                 workdir: Path, partitions: int = 16) -> None:
        self.store, self.gateway = store, gateway
        self.topics = Topics(prefix, store, gateway, layout="v2", partitions=partitions)
        self.envelope = Envelope(topics=self.topics,
                                 source=f"urn:presence-gateway:{store}:{gateway}")
        self.settings = replace(MqttSettings(), protocol="3.1.1", keepalive=5,
                                client_id=f"{prefix}-{store}-{gateway}", servers=tuple(servers),
                                topic_layout="v2", partitions=partitions)
        self.path = workdir / f"{store}-{gateway}.db"
        self.outbox: Outbox | None = None
        self.publisher: Publisher | None = None
        self.task: asyncio.Task[None] | None = None
        self.committed: list[str] = []  # ids, in sequence order
        self.commit_times: dict[str, float] = {}

    def status(self, state: str) -> bytes:
        return orjson.dumps({"state": state, "store": self.store, "gateway": self.gateway,
                             "version": "sim", "started": 0, "drivers": [],
                             "time": time.time()})

    async def start(self) -> None:
        self.outbox = await Outbox.open(str(self.path), max_rows=1_000_000, max_age_s=86400)
        self.publisher = Publisher(self.settings, self.outbox, status_topic=self.topics.status,
                                   online_payload=lambda: self.status("online"),
                                   offline_payload=self.status("offline"), backoff=(0.1, 1.0))
        self.task = asyncio.create_task(self.publisher.run())

    async def emit(self, batch: list[E.Event]) -> None:
        assert self.outbox is not None
        msgs = [self.envelope.wrap(ev) for ev in batch]
        await self.outbox.append(msgs)
        now = time.time()
        for m in msgs:
            self.committed.append(m.id)
            self.commit_times[m.id] = now

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.close()
