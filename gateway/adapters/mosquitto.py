"""A private broker on a free loopback port: for the demo (and reused by the tests).

It runs the real `mosquitto` binary from a generated config (anonymous, no persistence,
loopback only) and can be stopped, restarted on the same port, killed or paused, so fault
behaviour (broker gone, broker hung) can be shown with the real thing. Optionally it requires
a password (`users`) or listens with TLS (`tls`, with or without client certificates), so
credentials and certificate problems can be shown with the real thing too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from presence_gateway.errors import GatewayError


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)),
        None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """A TLS listener: the broker's certificate and key, the CA that client certificates must
    chain to, whether clients must present one (`require_certificate`) and the only TLS
    version to speak (e.g. "tlsv1.2"; default: what mosquitto allows)."""

    cert_file: str
    key_file: str
    ca_file: str
    require_certificate: bool = False
    tls_version: str | None = None


class LocalBroker:
    """The real `mosquitto` binary on a free loopback port."""

    name = "mosquitto"

    def __init__(self, port: int | None = None, workdir: str | None = None, *,
                 persistent: bool = False, users: Mapping[str, str] | None = None,
                 tls: BrokerTls | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="pg-broker-")
        self.dir = Path(workdir or (self._tmp.name if self._tmp else "."))
        self.log = self.dir / f"{self.name}.log"
        self.persistent = persistent
        self.users = dict(users or {})
        self.tls = tls
        self.command = self._configure()
        self.proc: subprocess.Popen[bytes] | None = None

    def _configure(self) -> list[str]:
        binary = find_mosquitto()
        if binary is None:
            raise GatewayError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.conf = self.dir / "mosquitto.conf"
        # Persistence keeps subscribers' sessions across a restart (fault tests need that).
        persistence = (f"persistence true\npersistence_location {self.dir}/\n"
                       if self.persistent else "persistence false\n")
        # As root, mosquitto drops to the `mosquitto` user, which cannot write our private
        # temporary directory; keep the caller's identity instead.
        user = "user root\n" if os.geteuid() == 0 else ""
        # max_queued_messages 0: no silent drop of QoS 1 messages queued for a slow or offline
        # subscriber (the default caps them at 1000), which the demo's check relies on.
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{self._tls_lines()}"
                             f"{self._auth_lines()}"
                             f"{user}{persistence}max_queued_messages 0\n"
                             f"set_tcp_nodelay true\nlog_dest file {self.log}\n")
        return [binary, "-c", str(self.conf)]

    def _auth_lines(self) -> str:
        if not self.users:
            return "allow_anonymous true\n"
        passwd = self.dir / "passwd"
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
        passwd.chmod(0o600)
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        # -U hashes the file in place: the passwords never appear on a command line.
        done = subprocess.run([tool, "-U", str(passwd)], capture_output=True, check=False)
        if done.returncode != 0:
            raise GatewayError(f"mosquitto_passwd -U failed: {done.stderr.decode()[-300:]}")
        return f"allow_anonymous false\npassword_file {passwd}\n"

    def _tls_lines(self) -> str:
        t = self.tls
        if t is None:
            return ""
        return (f"cafile {t.ca_file}\ncertfile {t.cert_file}\nkeyfile {t.key_file}\n"
                f"require_certificate {'true' if t.require_certificate else 'false'}\n"
                + (f"tls_version {t.tls_version}\n" if t.tls_version else ""))

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise GatewayError(f"{self.name} exited at start: {err.strip()[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise GatewayError(f"{self.name} did not listen on port {self.port} in {timeout:g}s")

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


def amqtt_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("amqtt") is not None


class AmqttBroker(LocalBroker):
    """amqtt (pure Python, MQTT 3.1.1 only) as a subprocess: the demo's broker where mosquitto
    is not installed (`pip install presence-gateway[broker]`), and the tests' second, different
    broker implementation (it proves the v5 -> 3.1.1 fallback). Not persistent."""

    name = "amqtt"

    def _configure(self) -> list[str]:
        if not amqtt_available():
            raise GatewayError("neither mosquitto nor amqtt is installed (Debian: apt-get "
                               "install mosquitto, or pip install 'presence-gateway[broker]')")
        self.conf = self.dir / "amqtt.yaml"
        self.conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n")
        return [sys.executable, "-c", "from amqtt.scripts.broker_script import main; main()",
                "-c", str(self.conf)]


def local_broker(workdir: str | None = None) -> LocalBroker:
    """Mosquitto when installed, else amqtt (for the demo on a bare machine)."""
    if find_mosquitto() is not None:
        return LocalBroker(workdir=workdir)
    return AmqttBroker(workdir=workdir)
