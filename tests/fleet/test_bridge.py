"""docs/fleet.md's bridge recipe: a store's Mosquitto bridged to the 3-node NATS cluster. The
node the bridge is on dies mid-stream (the bridge is cut); the bridge moves to the next
address, and every event still reaches the central consumer exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker, find_mosquitto
from presence_gateway.central.db import open_db
from presence_gateway.core.config import Endpoint
from tests.fleet.servers import NatsCluster
from tests.fleet.sim import SimGateway, stream
from tests.fleet.test_central import PARTS, all_consuming, consumer, opts, wait_events


def bridge_lines(nats: NatsCluster, prefix: str, store: str) -> str:
    addresses = " ".join(f"127.0.0.1:{n.mqtt_port}" for n in nats.nodes)
    return f"""
autosave_interval 1
autosave_on_changes true
connection central
address {addresses}
round_robin false
bridge_protocol_version mqttv311
try_private false
cleansession false
clientid bridge-{prefix}-{store}
start_type automatic
restart_timeout 1 5
keepalive_interval 5
topic {prefix}/v2/+/{store}/# out 1
"""


@pytest.mark.disrupts_nats
async def test_a_cut_bridge_loses_nothing(nats: NatsCluster, fleet_prefix: str,
                                          tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (Debian: apt-get install mosquitto)")
    store = LocalBroker(workdir=str(tmp_path), persistent=True)
    with store.conf.open("a") as conf:
        conf.write(bridge_lines(nats, fleet_prefix, "s7"))
    store.start()
    gw = SimGateway("s7", "gw1", prefix=fleet_prefix,
                    servers=[Endpoint("127.0.0.1", store.port)], workdir=tmp_path,
                    partitions=PARTS)
    db = await open_db(f"sqlite:///{tmp_path}/central.db")
    day = stream("s7", "gw1", 60)
    try:
        async with consumer(opts(nats, fleet_prefix, "a", gap_timeout_s=20), db) as a:
            await all_consuming(a, PARTS)
            await gw.start()
            for i in range(0, len(day), 10):
                await gw.emit(day[i:i + 10])
                await asyncio.sleep(0.05)
                if i == 60:
                    nats.nodes[0].kill()  # the bridge's first address: the bridge is cut
            assert gw.publisher is not None and await gw.publisher.flush(20)
            got = await wait_events(db, len(gw.committed), 45)
            assert got == len(gw.committed), f"{len(gw.committed) - got} lost"
            stored = {str(r[0]) for r in await db.fetch("SELECT id FROM events")}
            assert stored == set(gw.committed)
            report = await db.report()
            assert report["gaps"] == 0
    finally:
        await gw.stop()
        await db.close()
        store.close()
