"""Restarts keep the day: a gateway stopped mid-recording and started again on the same
database ends with the same visits and the same day totals as one uninterrupted run.

Real Wi-Fi + BLE captures (the demo's bundled files), a real Mosquitto and the real outbox.
The interrupted run stops after the first half of the sightings (as SIGTERM would), the next
one continues from the snapshot with the second half. Without the snapshot the second gateway
would open every visit again (a second visit.started for each device still present) and
count the day's entries from zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.cli.demo import demo_captures
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.continuity import MAGIC
from presence_gateway.core.model import OutboundMessage, Sighting
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.integration.test_spine import config, real_sightings


class Slice:
    """Part of a recording; `hold`: then wait as a radio would, until the gateway is stopped."""

    name = "slice"

    def __init__(self, sightings: list[Sighting], *, hold: bool) -> None:
        self.sightings, self.hold = sightings, hold
        self.put = asyncio.Event()

    async def run(self, sink: Any) -> None:
        await sink.put_many(self.sightings)
        self.put.set()
        if self.hold:
            await asyncio.Event().wait()


def replay(cfg: GatewayConfig, sightings: list[Sighting], *, interrupt: bool
           ) -> list[dict[str, Any]]:
    out: list[OutboundMessage] = []
    driver = Slice(sightings, hold=interrupt)
    svc = Service(cfg, RunOptions(mode=Mode.REPLAY, on_message=out.append,
                                  flush_timeout_s=10), [driver])

    async def go() -> None:
        task = asyncio.create_task(svc.run())
        if interrupt:
            await driver.put.wait()
            rt = svc.runtime
            assert rt is not None
            while rt.core.pipeline.observations < rt.channel.received:
                assert not task.done()
                await asyncio.sleep(0.01)  # the core has seen everything read: now the stop
            svc.stop_event.set()
        await task

    asyncio.run(go())
    return [orjson.loads(m.payload) for m in out if m.payload]


def summary(events: list[dict[str, Any]]) -> tuple[Counter[str], Counter[str], Any]:
    started = Counter(e["data"]["visit_id"] for e in events
                      if e["type"] == "presence.visit.started")
    ended = Counter(e["data"]["visit_id"] for e in events if e["type"] == "presence.visit.ended")
    footfall = [e["data"] for e in events if e["type"] == "presence.footfall"]
    last = footfall[-1]["today"] if footfall else None
    return started, ended, last


def test_a_restart_mid_recording_gives_the_uninterrupted_visits_and_totals(
        tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    whole_db, split_db = tmp_path / "whole", tmp_path / "split"
    whole_db.mkdir()
    split_db.mkdir()
    cfg_whole = config(whole_db, broker, demo_captures())
    sightings = real_sightings(cfg_whole)
    half = len(sightings) // 2
    whole = summary(replay(cfg_whole, sightings, interrupt=False))

    cfg = config(split_db, broker)
    first = replay(cfg, sightings[:half], interrupt=True)
    blob = sqlite3.connect(split_db / "gw.db").execute("SELECT blob FROM continuity").fetchone()
    assert blob is not None and bytes(blob[0]).startswith(MAGIC)
    frozen = bytes(blob[0])
    raw = {s.address for s in sightings[:half]}
    assert raw and not [a for a in raw if a in frozen or a.hex().encode() in frozen], \
        "no raw address reaches the snapshot"
    second = replay(cfg, sightings[half:], interrupt=False)
    split = summary(first + second)

    assert whole[0], "the capture has visits"
    assert split[0] == whole[0], "each visit started once, as in one run"
    assert split[1] == whole[1], "and ended once, with the same ids"
    assert split[2] == whole[2], "the day's totals are the uninterrupted run's"


def test_a_snapshot_of_another_secret_or_other_settings_is_not_used(
        tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    cfg = config(tmp_path, broker, demo_captures())
    sightings = real_sightings(cfg)
    half = len(sightings) // 2
    replay(cfg, sightings[:half], interrupt=True)
    other = dataclasses.replace(cfg, privacy=dataclasses.replace(cfg.privacy,
                                                                 secret=b"another-secret-1234"))
    events = replay(other, sightings[half:], interrupt=False)
    starts = [e for e in events if e["type"] == "presence.visit.started"]
    assert starts, "a fresh start: visits open again"
    row = sqlite3.connect(tmp_path / "gw.db").execute("SELECT count(*) FROM continuity")
    assert row.fetchone()[0] == 0, "a refused snapshot is discarded"


def test_live_restart_continues_the_open_visit(tmp_path: Path, mosquitto: Any) -> None:
    """Live (wall clock, ticker): the phone's visit survives a stop and start of the gateway."""
    from presence_gateway.core.config import parse_config
    from tests.integration.test_service_guard import Radio1

    broker = mosquitto()
    cfg = parse_config(f"store: {{id: s1}}\ngateway: {{id: gw1}}\nmqtt: {{url: '{broker.url}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
                       "privacy: {secret: env:S}\n", str(tmp_path / "gw.yaml"),
                       env={"S": "live-continuity-secret-0123"})

    def live_once() -> tuple[list[dict[str, Any]], int]:
        out: list[OutboundMessage] = []
        svc = Service(cfg, RunOptions(mode=Mode.LIVE, on_message=out.append,
                                      flush_timeout_s=5), [Radio1()])

        async def go() -> int:
            task = asyncio.create_task(svc.run())
            while svc.runtime is None or svc.runtime.core.pipeline.observations < 20:
                assert not task.done()
                await asyncio.sleep(0.05)
            tracked = svc.runtime.core.engine.tracked
            svc.stop_event.set()
            await task
            return tracked

        tracked = asyncio.run(go())
        return [orjson.loads(m.payload) for m in out if m.payload], tracked

    first, _ = live_once()
    second, tracked = live_once()
    started = [e["data"]["visit_id"] for e in first + second
               if e["type"] == "presence.visit.started"]
    assert len(started) == 1, "one visit across the restart, not one per process"
    assert tracked >= 1
