"""What a replay says about delivery at its end, from what the publisher actually did.

It used to say "broker unreachable: N messages stay in the outbox" whenever the final flush
did not finish while disconnected, including when the broker had been connected all along
and then went away. Now: "delivered N" when the outbox is empty, "unreachable" only when no
connection succeeded, "connection lost" when one did. Real Mosquitto, real SQLite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker, free_port
from presence_gateway.core.config import parse_config
from presence_gateway.drivers.registry import create, replay_settings
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import RunSummary, Service
from tests.integration import e2e_data as d


def recording(tmp_path: Path) -> Path:
    path = tmp_path / "visit.jsonl"
    path.write_text(d.ble_recording(["anon"], d.T0, 5))
    return path


def service(tmp_path: Path, url: str, drivers: Any = None) -> Service:
    cfg = parse_config(f"mqtt: {{url: '{url}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n",
                       "t.yaml")
    cfg = dataclasses.replace(cfg, drivers=replay_settings([str(recording(tmp_path))]))
    return Service(cfg, RunOptions(mode=Mode.REPLAY, flush_timeout_s=2), drivers)


def reports(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "presence_gateway")


def test_connected_all_along_reports_what_was_delivered(
        tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture) -> None:
    broker = mosquitto()
    caplog.set_level(logging.INFO)
    summary = asyncio.run(service(tmp_path, broker.url).run())
    said = reports(caplog)
    assert summary.delivered and summary.events > 0 and summary.outbox_depth == 0
    assert f"delivered {summary.acked} messages to {broker.host}:{broker.port}" in said
    assert "unreachable" not in said and "stay in the outbox" not in said


def test_no_broker_at_all_is_unreachable(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    summary = asyncio.run(service(tmp_path, f"mqtt://127.0.0.1:{free_port()}").run())
    said = reports(caplog)
    assert not summary.delivered and summary.acked == 0
    assert "unreachable (connection refused" in said
    assert f"{summary.events} messages stay in the outbox" in said
    assert "delivered" not in said


class KillsBrokerOnceConnected:
    """The recording, played only once the publisher is connected; the broker dies first."""

    def __init__(self, inner: Any, broker: LocalBroker, svc: list[Service]) -> None:
        self.name, self.inner, self.broker, self.svc = inner.name, inner, broker, svc

    async def run(self, sink: Any) -> None:
        # The publisher offers no event for "connected": poll its flag.
        while not ((rt := self.svc[0].runtime) and rt.publisher  # noqa: ASYNC110
                   and rt.publisher.connected):
            await asyncio.sleep(0.02)
        self.broker.kill()
        await self.inner.run(sink)


def test_a_lost_connection_is_not_called_unreachable(
        tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture) -> None:
    broker = mosquitto()
    caplog.set_level(logging.INFO)
    holder: list[Service] = []
    inner = create(replay_settings([str(recording(tmp_path))])[0])
    svc = service(tmp_path, broker.url, [KillsBrokerOnceConnected(inner, broker, holder)])
    holder.append(svc)
    summary: RunSummary = asyncio.run(svc.run())
    said = reports(caplog)
    assert not summary.delivered
    assert f"connection to {broker.host}:{broker.port} lost" in said
    assert "after 0 messages were delivered" in said and "unreachable" not in said
