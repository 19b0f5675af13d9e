"""A private Mosquitto on a free loopback port: for the demo (and reused by the tests).

It runs the real `mosquitto` binary from a generated config (anonymous, no persistence,
loopback only) and can be stopped, restarted on the same port, killed or paused, so fault
behaviour (broker gone, broker hung) can be shown with the real thing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from gateway.errors import GatewayError


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    def __init__(self, port: int | None = None, workdir: str | None = None, *,
                 persistent: bool = False) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise GatewayError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="pg-mosquitto-")
        self.dir = Path(workdir or (self._tmp.name if self._tmp else "."))
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        # Persistence keeps subscribers' sessions across a restart (fault tests need that).
        persistence = (f"persistence true\npersistence_location {self.dir}/\n" if persistent
                       else "persistence false\n")
        # As root, mosquitto drops to the `mosquitto` user, which cannot write our private
        # temporary directory; keep the caller's identity instead.
        user = "user root\n" if os.geteuid() == 0 else ""
        # max_queued_messages 0: no silent drop of QoS 1 messages queued for a slow or offline
        # subscriber (the default caps them at 1000), which the demo's check relies on.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"{user}{persistence}max_queued_messages 0\n"
                             f"set_tcp_nodelay true\nlog_dest file {self.log}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise GatewayError(f"mosquitto exited at start: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise GatewayError(f"mosquitto did not listen on port {self.port} in {timeout:g}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
