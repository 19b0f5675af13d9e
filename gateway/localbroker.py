"""Shell: a real `mosquitto` on a free loopback port, for tests, benchmarks and the demo.

Invariants:
- Listens on 127.0.0.1 only, anonymous, from a config generated in `workdir`; `start()` after
  `stop()`/`kill()` reuses the SAME port (what a client reconnecting would see).
- `start()` returns only once the port accepts TCP connections (or raises RuntimeError with
  the broker's log tail).
- With `persistence=True` the broker keeps retained messages and persistent sessions across
  a clean `stop()` (mosquitto writes its database on SIGTERM), so a subscriber with a
  persistent session misses nothing while the broker restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (PATH first, then the usual sbin dirs), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for d in SEARCH_DIRS:
        p = Path(d) / "mosquitto"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave us (bind to 0); the usual tiny race is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """A mosquitto subprocess; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, workdir: str | Path, *, port: int = 0, persistence: bool = False,
                 binary: str | None = None) -> None:
        self.binary = binary or find_mosquitto()
        if self.binary is None:
            raise FileNotFoundError("mosquitto not found (apt-get install mosquitto)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(self.host)
        self.persistence = persistence
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"log_dest file {self.log_path}",
            # Unlimited queue for offline persistent sessions: tests count every message.
            "max_queued_messages 0",
            "set_tcp_nodelay true",
        ]
        if self.persistence:
            lines.append(f"persistence_location {self.workdir}/")
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self, timeout: float = 5.0) -> None:
        if self.running:
            return
        assert self.binary is not None
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}: {self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM and wait (mosquitto saves its persistence file on the way out)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker cannot handle SIGTERM
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: no goodbye, no persistence write."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung broker)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def log_tail(self, n: int = 20) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
