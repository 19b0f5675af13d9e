"""The spine, end to end: real captures -> drivers -> core -> SQLite outbox -> real Mosquitto.

Every event in the outbox must reach a subscriber, valid against docs/asyncapi.yaml, in order
per topic, across a broker restart and with the broker down at start; no raw MAC address from
the input may appear in anything published, stored or logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.cli.demo import demo_captures
from presence_gateway.core.config import GatewayConfig, parse_config
from presence_gateway.core.model import OutboundMessage, Sighting
from presence_gateway.drivers.registry import create, replay_settings
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import RunSummary, Service
from tests.contract import validate_event, validate_status
from tests.mqtt_helpers import Collector
from tests.sinks import ListSink

SECRET = "integration-test-secret-0123456789"


def config(tmp_path: Path, broker: LocalBroker, paths: Iterable[str] = ()) -> GatewayConfig:
    text = (f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
            f"mqtt: {{url: '{broker.url}'}}\n"
            f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
            f"privacy: {{secret: env:PG_SECRET}}\n")
    cfg = parse_config(text, "test.yaml", env={"PG_SECRET": SECRET})
    return dataclasses.replace(cfg, drivers=replay_settings(paths))



class GatedDriver:
    """Replays real sightings in two halves, waiting on a gate in between."""

    def __init__(self, sightings: list[Sighting], gate: asyncio.Event) -> None:
        self.name = "gated"
        self.sightings = sightings
        self.gate = gate

    async def run(self, sink: Any) -> None:
        half = len(self.sightings) // 2
        await sink.put_many(self.sightings[:half])
        await self.gate.wait()
        await sink.put_many(self.sightings[half:])


def real_sightings(cfg: GatewayConfig) -> list[Sighting]:
    rec = ListSink()

    async def go() -> None:
        for d in cfg.drivers:
            await create(d).run(rec)
    asyncio.run(go())
    rec.sightings.sort(key=lambda s: s.ts)
    return rec.sightings


def run_service(cfg: GatewayConfig, drivers: list[Any] | None = None,
                **opts: Any) -> tuple[RunSummary, list[OutboundMessage]]:
    published: list[OutboundMessage] = []
    svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=published.append, **opts),
                  drivers)
    return asyncio.run(svc.run()), published


def assert_ordered_per_topic(events: list[dict[str, Any]]) -> None:
    """In order per topic once duplicates are dropped by id, as a consumer does (a resend of
    an event whose acknowledgement was lost in a reconnect may arrive after newer ones)."""
    last: dict[str, int] = {}
    seen: set[str] = set()
    for e in events:
        if e["id"] in seen:
            continue
        seen.add(e["id"])
        key = e["type"]
        assert e["sequence"] >= last.get(key, 0), f"{key} out of order"
        last[key] = e["sequence"]


def test_replay_of_real_captures_reaches_the_broker(tmp_path: Path,
                                                    local_broker: LocalBroker) -> None:
    cfg = config(tmp_path, local_broker, demo_captures())
    with Collector(local_broker.host, local_broker.port, "presence/v1/s1/gw1/#") as sub:
        summary, published = run_service(cfg)
        missing = sub.wait_for_ids({m.id for m in published}, timeout=15)
        events = sub.events()
        status = [orjson.loads(p) for t, p, _ in sub.snapshot() if t.endswith("/status")]
    assert not missing, f"{len(missing)} events never arrived"
    # a probe burst's identical retries are throttled before the core (core/throttle.py)
    assert summary.observations > 300 and summary.throttled > 100
    assert summary.observations + summary.throttled > 500 and summary.outbox_depth == 0
    assert summary.acked >= len(published)
    kinds = {e["type"] for e in events}
    assert {"presence.visit.started", "presence.visit.ended", "presence.gateway.stats"} <= kinds
    for e in events:
        validate_event(e)
    assert_ordered_per_topic(events)
    seqs = sorted({e["sequence"] for e in events})
    assert seqs == list(range(1, len(seqs) + 1)), "the per-gateway sequence has gaps"
    assert status and status[0]["state"] == "online"
    for s in status:
        validate_status(s)


def test_broker_restart_mid_replay_loses_nothing(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=str(tmp_path), persistent=True)
    broker.start()
    try:
        cfg = config(tmp_path, broker, demo_captures())
        sightings = real_sightings(cfg)
        published: list[OutboundMessage] = []

        async def scenario(sub: Collector) -> RunSummary:
            gate = asyncio.Event()
            svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=published.append),
                          [GatedDriver(sightings, gate)])
            task = asyncio.create_task(svc.run())
            for _ in range(200):
                await asyncio.sleep(0.05)
                if len(sub.events()) >= 5:
                    break
            assert sub.events(), "nothing arrived before the broker went away"
            broker.stop()
            gate.set()
            await asyncio.sleep(1.0)  # the second half goes to the outbox meanwhile
            broker.start()
            return await task

        with Collector(broker.host, broker.port, "presence/v1/s1/gw1/events/#",
                       persistent=True) as sub:
            summary = asyncio.run(scenario(sub))
            missing = sub.wait_for_ids(event_ids(published), timeout=20)
            events = sub.events()
        lost = sorted((m.seq, m.topic.rsplit("/", 1)[-1]) for m in published if m.id in missing)
        assert not missing, f"{len(missing)} of {len(published)} events lost: {lost}"
        assert summary.outbox_depth == 0
        by_id: dict[str, bytes] = {}
        for e in events:  # duplicates are allowed only as the same event (same id)
            blob = orjson.dumps(e, option=orjson.OPT_SORT_KEYS)
            assert by_id.setdefault(e["id"], blob) == blob
        assert_ordered_per_topic(events)
    finally:
        broker.close()


def test_started_with_broker_down_queues_then_delivers(tmp_path: Path) -> None:
    broker = LocalBroker(workdir=str(tmp_path), persistent=True)
    broker.start()  # only to register the subscriber's persistent session
    cfg = config(tmp_path, broker, demo_captures())
    sightings = real_sightings(cfg)
    published: list[OutboundMessage] = []

    async def scenario() -> RunSummary:
        gate = asyncio.Event()
        svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=published.append),
                      [GatedDriver(sightings, gate)])
        task = asyncio.create_task(svc.run())
        await asyncio.sleep(1.5)
        assert not task.done(), "the gateway must keep running without a broker"
        assert svc.runtime is not None
        depth = await svc.runtime.outbox.depth()
        assert depth > 0 and depth == len(published), "events must wait in the outbox"
        assert svc.runtime.publisher is not None and svc.runtime.publisher.last_error
        broker.start()
        await asyncio.sleep(0.5)
        gate.set()
        return await task

    try:
        with Collector(broker.host, broker.port, "presence/v1/s1/gw1/events/#",
                       persistent=True) as sub:
            broker.stop()
            summary = asyncio.run(scenario())
            missing = sub.wait_for_ids(event_ids(published), timeout=20)
        assert not missing, f"{len(missing)} of {len(published)} events never arrived"
        assert summary.outbox_depth == 0 and summary.acked >= len(published)
    finally:
        broker.close()


def event_ids(published: list[OutboundMessage]) -> set[str]:
    """Ids of the (non-retained) events: what an events/# subscriber must receive."""
    return {m.id for m in published if "/events/" in m.topic}


MAC_RE = re.compile(rb"(?i)(?:[0-9a-f]{2}[:-]){5}[0-9a-f]{2}")


def test_no_raw_mac_anywhere(tmp_path: Path, local_broker: LocalBroker,
                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(tmp_path, local_broker, demo_captures())
    raw = {s.address for s in real_sightings(cfg)}
    assert len(raw) >= 15  # Brno 3 + tcpdump 1 + Boston BLE ~15 advertisers
    needles: set[bytes] = set()
    for a in raw:
        h = a.hex()
        needles |= {h.encode(), h.upper().encode(), a,
                    ":".join(h[i:i + 2] for i in range(0, 12, 2)).encode(),
                    "-".join(h[i:i + 2] for i in range(0, 12, 2)).encode()}
    events_out = tmp_path / "events.jsonl"
    obs_out = tmp_path / "obs.jsonl"
    with Collector(local_broker.host, local_broker.port, "#") as sub, \
            events_out.open("wb") as ev_f, obs_out.open("wb") as obs_f:
        _, published = run_service(cfg, events_out=ev_f, observations_out=obs_f)
        assert not sub.wait_for_ids({m.id for m in published}, timeout=15)
        wire = b"\n".join(p for _, p, _ in sub.snapshot())
    db = sqlite3.connect(tmp_path / "gw.db")
    dump = "\n".join(db.iterdump()).encode()
    db.close()
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    logs = caplog.text.encode()
    for name, blob in (("mqtt", wire), ("sqlite", dump), ("files", files), ("logs", logs)):
        hits = [n for n in needles if n in blob]
        assert not hits, f"raw address found in {name}: {hits[:3]}"
    assert not MAC_RE.search(wire), "something MAC-shaped was published"
