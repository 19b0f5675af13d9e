"""The gateway's retained status payload (`.../status`): online while running, offline as will.

Invariants: the payload names the store, gateway, version, start time and drivers; `time` is
when the payload was made (the will's is the connect time: a broker publishes it unchanged).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from presence_gateway import __version__
from presence_gateway.core.config import GatewayConfig


class StatusReport:
    def __init__(self, cfg: GatewayConfig, drivers: Sequence[str], *, started: float) -> None:
        self.store = cfg.store_id
        self.gateway = cfg.gateway_id
        self.drivers = list(drivers)
        self.started = started

    def payload(self, state: str) -> bytes:
        return orjson.dumps({
            "state": state, "store": self.store, "gateway": self.gateway,
            "version": __version__, "started": self.started, "drivers": self.drivers,
            "time": time.time(),
        })
