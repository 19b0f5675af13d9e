"""systemd notifications reach a real AF_UNIX datagram socket, as systemd's would."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from presence_gateway.adapters.sdnotify import Notifier


def test_ready_and_watchdog_datagrams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        n = Notifier()
        assert n.enabled and n.watchdog_interval_s == 15.0
        assert n.ready("2 drivers")
        assert server.recv(256) == b"READY=1\nSTATUS=2 drivers"
        assert n.watchdog()
        assert server.recv(256) == b"WATCHDOG=1"


def test_without_systemd_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready() and not n.watchdog()


def test_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).ready()


def test_a_live_gateway_keeps_its_status_line_current(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live (wall clock, ticker) with a phone probing: READY, then STATUS lines with the
    observation rate, devices, outbox depth and broker state."""
    import asyncio

    from presence_gateway.core.config import parse_config
    from presence_gateway.runtime import service as service_module
    from presence_gateway.runtime.assembly import Mode, RunOptions
    from tests.integration.test_service_guard import Radio1

    path = str(tmp_path / "notify.sock")
    monkeypatch.setattr(service_module, "STATUS_S", 0.5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        cfg = parse_config(f"storage: {{path: '{tmp_path / 'g.db'}'}}\n", "t.yaml")
        svc = service_module.Service(cfg, RunOptions(mode=Mode.LIVE, publish=False), [Radio1()])

        async def go() -> list[bytes]:
            task = asyncio.create_task(svc.run())
            got: list[bytes] = []
            loop = asyncio.get_running_loop()
            while not any(m.startswith(b"STATUS=") and b" 0 obs/s" not in m for m in got):
                got.append(await loop.run_in_executor(None, server.recv, 512))
            svc.stop_event.set()
            await task
            return got

        got = asyncio.run(go())
    assert got[0].startswith(b"READY=1")
    status = [m for m in got if m.startswith(b"STATUS=")][-1].decode()
    assert " obs/s, 1 devices, outbox 0, no broker" in status
    assert int(status.split("=", 1)[1].split()[0]) >= 5  # the phone probes at 20 Hz
