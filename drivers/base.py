"""The driver protocol: how a radio or a recording plugs into the gateway.

A driver has a `name` and one coroutine `run(sink)`. It starts its source under a timeout,
hands every parsed frame or advert to the sink, releases the source in `finally`, and raises
`DriverError(name, reason)` when it cannot go on (adapter missing, permission, not in monitor
mode, file unreadable). Live drivers run until cancelled; replay drivers return at the end of
their recording. The service supervises drivers and restarts failed live ones with backoff.

Drivers never see pseudonyms or the pipeline: the sink they are given applies the privacy
boundary (raw address -> keyed pseudonym) before anything is queued.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from presence_gateway.core.model import Rejection, Sighting


class Sink(Protocol):
    """Where a driver delivers what it parsed."""

    def offer(self, sighting: Sighting) -> None:
        """Live sources: never blocks; when the queue is full the oldest item is dropped
        and counted (a radio cannot be paused)."""

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        """Recorded sources: waits for room, so a replay never loses an observation."""

    def reject(self, rejection: Rejection) -> None:
        """Count a frame or advert the parser refused (reason codes are aggregated)."""


class Driver(Protocol):
    name: str

    async def run(self, sink: Sink) -> None: ...


@runtime_checkable
class ReportsProblem(Protocol):
    """A driver that retries on its own (e.g. BLE start failures with backoff) says what is
    wrong meanwhile, so health checks need not wait for it to give up."""

    @property
    def problem(self) -> str | None: ...

