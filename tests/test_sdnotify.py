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
