"""Shared fixtures: a REAL mosquitto per test and a real paho subscriber.

- `mosquitto`: a factory; `mosquitto()` starts a broker on a free loopback port (bound to port
  0 first to pick it) from a config generated in tmp_path, waits until the port accepts
  connections, and returns a `gateway.mosquitto.LocalBroker` with `.host .port .url .start()
  (restart on the SAME port) .stop() .kill() (SIGKILL) .pause()/.resume() (SIGSTOP/SIGCONT)`.
  `mosquitto(persistent=True)` keeps subscribers' sessions across a clean stop;
  `mosquitto(users={"name": "password"})` requires a password, `mosquitto(tls=BrokerTls(...))`
  listens with TLS (see LocalBroker). Every broker is stopped at teardown. Skips with a
  reason when the binary is missing.
- `subscriber`: a factory; `subscriber(broker, "topic/#")` returns a connected, subscribed
  `Subscriber` (paho with its own thread: fine in tests) collecting (topic, payload, retain),
  with `wait_for(n, timeout)` (blocking) and `await until(n, timeout)` (async tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from presence_gateway.adapters.mosquitto import BrokerTls, LocalBroker, find_mosquitto
from presence_gateway.build import compiled_modules
from tests.mqtt_helpers import Collector


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the compiled build (tests/test_compiled.py runs the core tests with it), a test
    marked `pure_python` is skipped: it subclasses or patches a compiled class."""
    if not compiled_modules():
        return
    skip = pytest.mark.skip(reason="needs the pure-Python build (patches a compiled class)")
    for item in items:
        if item.get_closest_marker("pure_python"):
            item.add_marker(skip)


class Subscriber(Collector):
    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, bytes, bool]]:
        """Wait until at least `n` messages arrived (or timeout); returns what arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.snapshot()
            if len(got) >= n:
                return got
            time.sleep(0.02)
        return self.snapshot()

    async def until(self, n: int, within_s: float = 10.0, *,
                    distinct: bool = False) -> list[tuple[str, bytes, bool]]:
        """`wait_for` for async tests: polls without blocking the event loop.

        `distinct`: count distinct payloads, for tests where QoS 1 redelivery after a broker
        restart may repeat some (counting copies would return before the last ones arrive)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            got = self.snapshot()
            if (len({p for _, p, _ in got}) if distinct else len(got)) >= n:
                return got
            await asyncio.sleep(0.02)
        return self.snapshot()

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [p for t, p, _ in self.snapshot() if topic is None or t == topic]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Callable[..., LocalBroker]]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto binary not found on PATH or in /usr/sbin "
                    "(Debian: apt-get install mosquitto)")
    brokers: list[LocalBroker] = []

    def start(*, persistent: bool = False, users: dict[str, str] | None = None,
              tls: BrokerTls | None = None) -> LocalBroker:
        workdir = tmp_path / f"mosquitto-{len(brokers)}"
        workdir.mkdir()
        broker = LocalBroker(workdir=str(workdir), persistent=persistent, users=users, tls=tls)
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.resume()  # a SIGSTOPped broker ignores SIGTERM until continued
        broker.close()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    subs: list[Subscriber] = []

    def connect(broker: LocalBroker, topic: str = "#", *, persistent: bool = False) -> Subscriber:
        sub = Subscriber(broker.host, broker.port, topic, persistent=persistent)
        sub.__enter__()
        subs.append(sub)
        return sub

    yield connect
    for sub in subs:
        sub.__exit__(None, None, None)
