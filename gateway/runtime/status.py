"""The gateway's retained status payload (`.../status`): online while running, offline as will.

Invariants: the payload names the store, gateway, version, start time and drivers; times are
RFC 3339 UTC. `time` is when the payload was made: the online status at each connect, the
offline status of a clean stop at the stop. The will is published by the broker when the
connection dies, a moment the gateway cannot know: it carries no `time` (a consumer stamps its
arrival) and says `reason: connection_lost`; a clean stop says `reason: stopped`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from presence_gateway import __version__
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.envelope import rfc3339


class StatusReport:
    def __init__(self, cfg: GatewayConfig, drivers: Sequence[str], *, started: float) -> None:
        self.store = cfg.store_id
        self.gateway = cfg.gateway_id
        self.drivers = list(drivers)
        self.started = started

    def _body(self, state: str) -> dict[str, object]:
        return {"state": state, "store": self.store, "gateway": self.gateway,
                "version": __version__, "started": rfc3339(self.started),
                "drivers": self.drivers}

    def payload(self, state: str) -> bytes:
        """The online status (and any status made now)."""
        return orjson.dumps({**self._body(state), "time": rfc3339(time.time())})

    def will(self) -> bytes:
        """The last will: offline, with no time (the broker sends it when it notices)."""
        return orjson.dumps({**self._body("offline"), "reason": "connection_lost"})

    def stopped(self) -> bytes:
        """The offline status of a clean stop, made at the stop."""
        return orjson.dumps({**self._body("offline"), "reason": "stopped",
                             "time": rfc3339(time.time())})
