"""Signal handlers of a live service: installed for the run, removed at shutdown, and the
handler that was there before restored (asyncio's remove_signal_handler alone resets to
SIG_DFL: under `nohup` a SIGHUP during the final flush would then kill the gateway).

A real live Service (wall clock, ticker, control plane) on a scratch database; the radio
waits until stopped. Real signals are sent to this process, only while a Python handler
(ours or the test's recorder) is installed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from presence_gateway.core.config import parse_config
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.control import ControlPlane
from presence_gateway.runtime.service import Service, run_with_signals

SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


class Idle:
    """A live radio that hears nothing until the gateway stops it."""

    name = "idle"

    async def run(self, sink: Any) -> None:
        await asyncio.Event().wait()


class Recorder:
    def __init__(self) -> None:
        self.got: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.got.append(signum)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """The process's handlers before the gateway starts (what an embedding program set)."""
    rec = Recorder()
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, rec)
    try:
        yield rec
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def live_service(tmp_path: Path) -> Service:
    cfg = parse_config(f"storage: {{path: '{tmp_path / 'gw.db'}'}}\n", "t.yaml")
    return Service(cfg, RunOptions(mode=Mode.LIVE, publish=False), [Idle()])


async def started(svc: Service, task: asyncio.Task[Any]) -> None:
    deadline = time.monotonic() + 10
    while svc.runtime is None or isinstance(signal.getsignal(signal.SIGHUP), Recorder):
        assert not task.done(), "the service ended early"
        assert time.monotonic() < deadline, "the service did not start"
        await asyncio.sleep(0.02)


async def settle() -> None:
    for _ in range(5):  # the loop's wakeup fd delivers the signal on a later iteration
        await asyncio.sleep(0.02)


def test_sighup_reloads_while_live_and_the_old_handler_is_back_after_stop(
        tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    reloads: list[str] = []
    monkeypatch.setattr(ControlPlane, "sighup", lambda self: reloads.append("hup"))
    svc = live_service(tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(run_with_signals(svc))
        await started(svc, task)
        os.kill(os.getpid(), signal.SIGHUP)
        await settle()
        assert reloads == ["hup"] and recorder.got == []
        svc.stop_event.set()
        await task
        # The loop still runs (as in a program embedding the gateway): the signals are
        # ours again, and the gateway's reload is not called any more.
        for s in SIGNALS:
            assert signal.getsignal(s) is recorder, s.name
        os.kill(os.getpid(), signal.SIGHUP)
        await settle()

    asyncio.run(scenario())
    assert reloads == ["hup"]
    assert recorder.got == [signal.SIGHUP]


def test_handlers_are_restored_when_the_service_is_cancelled(
        tmp_path: Path, recorder: Recorder) -> None:
    svc = live_service(tmp_path)

    async def scenario() -> None:
        task = asyncio.create_task(run_with_signals(svc))
        await started(svc, task)
        assert signal.getsignal(signal.SIGHUP) is not recorder
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for s in SIGNALS:
            assert signal.getsignal(s) is recorder, s.name

    asyncio.run(scenario())
