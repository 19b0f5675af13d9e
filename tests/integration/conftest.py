"""Integration fixtures on top of tests/conftest.py's real Mosquitto factory."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from presence_gateway.adapters.mosquitto import LocalBroker


@pytest.fixture
def local_broker(mosquitto: Callable[..., LocalBroker]) -> LocalBroker:
    """One started broker on a free loopback port, stopped after the test."""
    return mosquitto()
