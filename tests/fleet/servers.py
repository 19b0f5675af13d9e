"""Real servers for the fleet tests: a 3-node NATS cluster (JetStream R3 + MQTT) and PostgreSQL.

Both are started from Debian packages on free loopback ports, in a directory the test owns,
and are stopped (SIGTERM, then SIGKILL) at teardown. Neither is a mock: the point of the fleet
tests is what a real clustered broker and a real database do when a node or a consumer dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.fleet.nats_health import problems

NATS_BIN = "/usr/sbin/nats-server"


def _pg_bin() -> Path:
    """The newest Debian PostgreSQL server (bookworm: 15), e.g. /usr/lib/postgresql/15/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout} s")


def find_nats() -> str | None:
    return shutil.which("nats-server") or (NATS_BIN if os.access(NATS_BIN, os.X_OK) else None)


def find_postgres() -> Path | None:
    return PG_BIN if (PG_BIN / "postgres").exists() and (PG_BIN / "initdb").exists() else None


class NatsNode:
    """One `nats-server` of the cluster; `start()` again reuses its ports and store dir."""

    def __init__(self, name: str, workdir: Path, client: int, cluster: int, mqtt: int,
                 http: int) -> None:
        self.name = name
        self.dir = workdir
        self.port, self.cluster_port, self.mqtt_port, self.http_port = client, cluster, mqtt, http
        self.conf = workdir / f"{name}.conf"
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # processes started so far: a new one needs its MQTT layer checked

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    def write_conf(self, routes: list[int], *, ack_wait_s: float) -> None:
        route_list = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        self.conf.write_text(f"""
server_name: {self.name}
listen: 127.0.0.1:{self.port}
http: 127.0.0.1:{self.http_port}
jetstream {{ store_dir: "{self.dir / (self.name + '-js')}" }}
cluster {{
  name: fleet
  listen: 127.0.0.1:{self.cluster_port}
  routes: [{route_list}]
}}
mqtt {{
  listen: 127.0.0.1:{self.mqtt_port}
  # Sessions, retained messages and QoS 1 queues live in JetStream streams replicated on
  # all three nodes, so a session outlives the node it was opened on.
  stream_replicas: 3
  # Redelivery of an unacknowledged QoS 1 message; the default (30 s) would make a
  # consumer hand-over in the tests wait half a minute.
  ack_wait: "{ack_wait_s}s"
}}
""")

    def start(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.spawn()
        wait_port(self.mqtt_port, timeout, self.proc, self.log)

    def spawn(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([find_nats() or NATS_BIN, "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """Three nodes, full-mesh routes, JetStream on each, MQTT listener on each."""

    def __init__(self, workdir: Path, *, size: int = 3, ack_wait_s: float = 3.0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = [NatsNode(f"n{i + 1}", workdir, free_port(), free_port(), free_port(),
                               free_port()) for i in range(size)]
        for node in self.nodes:
            node.write_conf([n.cluster_port for n in self.nodes if n is not node],
                            ack_wait_s=ack_wait_s)
        self._checked: dict[str, int] = {}  # node name -> its `starts` when last found whole

    @property
    def mqtt_urls(self) -> list[str]:
        return [n.mqtt_url for n in self.nodes]

    def start(self) -> None:
        for node in self.nodes:  # all at once: each waits for its routes before JetStream
            node.spawn()
        for node in self.nodes:
            wait_port(node.mqtt_port, 30.0, node.proc, node.log)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the running nodes are a whole cluster (tests/fleet/nats_health.py: JetStream
        meta leader known, every MQTT stream led and caught up on every node), with an MQTT
        round trip through each node started since the last check (its first MQTT session
        sets up the node's MQTT layer, and on a new cluster creates the streams: seconds,
        which must not count against a test). Costs a few HTTP requests when nothing changed.
        Raises, saying what is wrong, when the cluster is not whole within `timeout`."""
        deadline = time.monotonic() + timeout
        found = self._until_whole(deadline, streams=False)
        if not found:
            for node in self.nodes:
                if node.running and node.starts != self._checked.get(node.name):
                    mqtt_round_trip(node.mqtt_port, deadline)
            found = self._until_whole(deadline, streams=True)
        if found:
            raise RuntimeError(f"NATS cluster not whole after {timeout:.0f} s: "
                               + "; ".join(found))
        self._checked = {n.name: n.starts for n in self.nodes if n.running}

    def _until_whole(self, deadline: float, *, streams: bool) -> list[str]:
        """What is still wrong at `deadline` (nothing: whole). Without `streams`, only each
        node's server and meta layer (before the round trip that may create the streams)."""
        while True:
            found = problems(self.nodes)
            if not streams:
                found = [p for p in found if not p.startswith("$MQTT_")]
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


class Postgres:
    """A throwaway PostgreSQL 15 cluster: initdb into `workdir`, `postgres` on a free port.

    As root it runs as the `postgres` user (the server refuses to run as root)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.data = workdir / "data"
        self.sock = workdir / "sock"
        self.log = workdir / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self._as:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
        if not self.data.exists():
            subprocess.run([*self._as, str(PG_BIN / "initdb"), "-D", str(self.data), "-U",
                            "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                           check=True, capture_output=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self._as, str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.sock), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, 30.0, self.proc, self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port opens before it accepts logins
            r = subprocess.run([*self._as, str(PG_BIN.parent / "bin" / "pg_isready"), "-h",
                                "127.0.0.1", "-p", str(self.port)], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def mqtt_round_trip(port: int, deadline: float) -> None:
    """Publish QoS 1 to a node and read it back through the same node, until it works."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = f"warmup/{port}"
    while time.monotonic() < deadline:
        got: list[bytes] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"warmup-{port}")
        c.on_message = lambda _c, _u, m, got=got: got.append(m.payload)
        try:
            c.connect("127.0.0.1", port, keepalive=5)
            c.loop_start()
            c.subscribe(topic, 1)
            time.sleep(0.2)
            c.publish(topic, b"x", 1).wait_for_publish(3)
            end = time.monotonic() + 3
            while not got and time.monotonic() < end:
                time.sleep(0.02)
        except (OSError, RuntimeError, ValueError):
            pass
        finally:
            c.disconnect()
            c.loop_stop()
        if got:
            return
        time.sleep(0.2)
    raise RuntimeError(f"no MQTT round trip through port {port}")
