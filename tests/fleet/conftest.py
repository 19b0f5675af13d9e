"""Fleet fixtures: one real 3-node NATS cluster and one real PostgreSQL per test session.

- `nats_cluster` (session): three `nats-server` nodes on free loopback ports, full-mesh routes,
  JetStream on each, the MQTT listener on each with its streams at replicas 3. Starting it costs
  ~1 s, so it is shared; tests isolate themselves with a unique topic prefix (`fleet_prefix`)
  and unique client ids.
- `nats` (function): the same cluster, with every node running and healthy before the test
  and again after it (a test may kill or restart nodes; the next one starts whole).
- `postgres_server` (session): initdb + `postgres` in a temp dir on a free port.
- `pg_url` (function): a fresh database on that server for one test.
Each skips with a reason when its Debian package is missing (`.ci/run` installs both).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.servers import PG_BIN, NatsCluster, Postgres, find_nats, find_postgres


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    if find_nats() is None:
        pytest.skip("nats-server not found on PATH or in /usr/sbin (Debian: apt-get install"
                    " nats-server)")
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def nats(nats_cluster: NatsCluster) -> Iterator[NatsCluster]:
    _whole(nats_cluster)
    yield nats_cluster
    _whole(nats_cluster)


def _whole(cluster: NatsCluster) -> None:
    for node in cluster.nodes:
        if not node.running:
            node.start()
    cluster.wait_ready()


@pytest.fixture
def fleet_prefix() -> str:
    """A topic prefix of this test's own: sessions and retained state of other tests on the
    shared cluster never reach it."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    if find_postgres() is None:
        pytest.skip(f"PostgreSQL not found in {PG_BIN} (Debian: apt-get install postgresql)")
    # Not under pytest's temp root: pytest keeps that 0700 (re-tightened by every session),
    # and the server runs as the `postgres` user, which must reach its data directory.
    workdir = Path(tempfile.mkdtemp(prefix="presence-pg-"))
    pg = Postgres(workdir)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: Postgres) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(postgres_server.port),
                    "-U", "postgres", "-q", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{name}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.slow)
