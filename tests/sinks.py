"""The driver protocol's other end for tests: a real, minimal in-memory Sink."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from presence_gateway.core.model import Rejection, Sighting


class ListSink:
    """Keeps every sighting it is given (in order), the size of each batch, and counts
    rejections by reason."""

    def __init__(self) -> None:
        self.sightings: list[Sighting] = []
        self.batches: list[int] = []
        self.rejections: Counter[str] = Counter()

    @property
    def items(self) -> list[Sighting]:
        return self.sightings

    @property
    def rejected(self) -> Counter[str]:
        return self.rejections

    def offer(self, sighting: Sighting) -> None:
        self.sightings.append(sighting)

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        batch = list(sightings)
        self.batches.append(len(batch))
        self.sightings.extend(batch)

    def reject(self, rejection: Rejection) -> None:
        self.rejections[rejection.reason] += 1
