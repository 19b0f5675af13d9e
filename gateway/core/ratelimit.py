"""Token buckets: how many rejection events and warnings one source may cause.

Anyone who can publish on an inbound topic can send junk; each piece is rejected, but a
rejection event per message (QoS 1, stored in the outbox) and a log line per message would let
that person fill the outbox, the disk and the journal from the broker side. A bucket per source
topic lets a burst through (so a real misconfiguration is reported at once) and then one per
`interval_s`; the rest are only counted (the stats event carries the count).

Invariants: pure, time is an argument; memory is bounded by the number of sources, which the
caller keeps finite (fixed topic names, not payload contents).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class RateLimit:
    burst: int = 5
    interval_s: float = 10.0
    suppressed: Counter[str] = field(default_factory=Counter)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, source: str, now: float) -> bool:
        b = self._buckets.get(source)
        if b is None:
            b = self._buckets[source] = _Bucket(float(self.burst), now)
        b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at) / self.interval_s)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        self.suppressed[source] += 1
        return False
