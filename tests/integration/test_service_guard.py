"""A bug in a side task is logged, counted and restarted; it never ends the run or skips the
final flush (it used to surface as an ExceptionGroup traceback with the last events unsent).

A live service (wall clock, ticker, control plane, peers) with a real Mosquitto; the peer
summary task is broken on purpose. The radio's sightings must still become events that reach
the broker when the gateway stops.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from presence_gateway.core.config import parse_config
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.control import ControlPlane
from presence_gateway.runtime.service import Service


class Radio1:
    """A live radio: one phone probing every 50 ms until the gateway stops it."""

    name = "radio"

    async def run(self, sink: Any) -> None:
        while True:
            sink.offer(Sighting(ts=time.time(), radio=Radio.WIFI,
                                address=bytes.fromhex("3c2eff4a1b07"),
                                address_kind=AddressKind.PUBLIC, rssi=-55, channel=6,
                                kind=Kind.PROBE_REQUEST.value))
            await asyncio.sleep(0.05)


async def broken_peers(self: ControlPlane) -> None:
    raise RuntimeError("a bug in the peer summaries")


def test_a_broken_side_task_neither_stops_the_gateway_nor_skips_the_flush(
        tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = mosquitto()
    cfg = parse_config(f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
                       f"mqtt: {{url: '{broker.url}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n"
                       "presence: {stats_interval: 1s}\n", "t.yaml")
    monkeypatch.setattr(ControlPlane, "peers", broken_peers)
    svc = Service(cfg, RunOptions(mode=Mode.LIVE, flush_timeout_s=10), [Radio1()])

    async def scenario() -> Any:
        task = asyncio.create_task(svc.run())
        deadline = time.monotonic() + 10
        while not (svc.summary.task_errors and svc.runtime is not None
                   and svc.runtime.core.pipeline.observations >= 20):
            assert not task.done(), "the service ended on a side-task bug"
            assert time.monotonic() < deadline, "no observation or no error recorded"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # the guard restarts the task (and it fails again)
        assert not task.done()
        svc.stop_event.set()
        return await task

    summary = asyncio.run(scenario())
    assert summary.task_errors[0].startswith("peers: RuntimeError")
    assert len(summary.task_errors) >= 2, "the guard restarts the task"
    assert summary.observations >= 20 and summary.events > 0
    assert summary.delivered and summary.outbox_depth == 0
    assert summary.acked == summary.published > 0
