"""The real gateway (replay of the demo captures through the whole runtime) with
`mqtt.servers` = the 3 NATS nodes and `mqtt.topic_layout: v2`, consumed by central: every
published event is stored once, in sequence order, and the status ends `offline`."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from presence_gateway.central.db import open_db
from presence_gateway.cli.demo import demo_captures
from presence_gateway.core.config import parse_config
from presence_gateway.core.model import OutboundMessage
from presence_gateway.drivers.registry import replay_settings
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.fleet.nats_health import describe
from tests.fleet.servers import NatsCluster
from tests.fleet.test_central import (
    PARTS,
    all_consuming,
    consumer,
    opts,
    ordered_per_gateway,
    wait_events,
)


async def test_the_gateway_publishes_v2_through_the_cluster(nats: NatsCluster, fleet_prefix: str,
                                                            tmp_path: Path) -> None:
    servers = ", ".join(f"'{u}'" for u in nats.mqtt_urls)
    text = (f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
            f"mqtt: {{servers: [{servers}], topic_layout: v2, partitions: {PARTS},"
            f" topic_prefix: {fleet_prefix}, client_id: {fleet_prefix}-gw1}}\n"
            f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
            f"privacy: {{secret: env:PG_SECRET}}\n")
    cfg = parse_config(text, "test.yaml", env={"PG_SECRET": "fleet-test-secret-0123456789"})
    cfg = dataclasses.replace(cfg, drivers=replay_settings(demo_captures()))
    assert len(cfg.mqtt.endpoints()) == 3
    db = await open_db(f"sqlite:///{tmp_path}/central.db")
    published: list[OutboundMessage] = []
    try:
        async with consumer(opts(nats, fleet_prefix, "a"), db) as a:
            await all_consuming(a, PARTS)
            svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=published.append))
            summary = await svc.run()
            assert summary.outbox_depth == 0 and published
            assert {m.topic.split("/")[1] for m in published} == {"v2"}
            got = await wait_events(db, len(published), 60)
            # What central saw, should it fall short (once, on a loaded CI machine, none of
            # 737 arrived): sessions opened (more than PARTS: reconnects), deliveries applied
            # or unusable, events held for order, which partitions are subscribed.
            seen = {p: w.connected.is_set() for p, (w, _) in a.workers.items()}
            if got != len(published):  # and what JetStream says about the consumers
                cluster = await asyncio.to_thread(describe, nats.nodes, fleet_prefix)
                raise AssertionError(f"{got} of {len(published)} stored; {a.counters}; held"
                                     f" {a.held()}; subscribed {seen}\n{cluster}")
            for _ in range(50):  # the clean stop's `offline` follows the last event
                report = await db.report()
                if report["gateways"]["s1/gw1"]["status"] == "offline":
                    break
                await asyncio.sleep(0.1)
    finally:
        await db.close()
    assert report["events"] == len(published) and report["gaps"] == 0
    entry = report["gateways"]["s1/gw1"]
    assert entry["last_sequence"] == max(m.seq for m in published)
    assert entry["status"] == "offline"  # the clean stop said so, after `online`
    db = await open_db(f"sqlite:///{tmp_path}/central.db")
    try:
        seqs = (await ordered_per_gateway(db))["s1/gw1"]
    finally:
        await db.close()
    assert seqs == sorted(seqs)
