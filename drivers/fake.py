"""In-memory driver for tests and demos: delivers a fixed list of sightings, like a replay."""

from __future__ import annotations

from collections.abc import Sequence

from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.drivers.base import Sink


class FakeDriver:
    def __init__(self, name: str, items: Sequence[Sighting | Rejection] = ()) -> None:
        self.name = name
        self.items = list(items)

    async def run(self, sink: Sink) -> None:
        batch: list[Sighting] = []
        for item in self.items:
            if isinstance(item, Rejection):
                sink.reject(item)
            else:
                batch.append(item)
        await sink.put_many(batch)
