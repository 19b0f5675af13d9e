"""A real Mosquitto per test on a free loopback port (stoppable, restartable on the same port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.mosquitto import LocalBroker, find_mosquitto


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = LocalBroker(workdir=str(tmp_path))
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
