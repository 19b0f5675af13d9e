"""The offer caps ledger in memory: firing times indexed for cap checks (pure).

Invariants:
- Every firing is one `LedgerEntry`; `add` indexes it per (customer, offer), per customer, per
  offer, per visit and store-wide, each a sorted list of times, so a cap check is a bisect.
- `pending` holds entries added since the store shell last took them (`new=False` for rows
  loaded from SQLite, which must not be written twice).
- `prune(before)` keeps memory to the rules' horizon; `forget` drops what names a customer.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One firing, as persisted in the `offer_ledger` table."""

    ts: float
    offer_id: str
    customer_id: str
    visit_id: str


class Ledger:
    """Firing times indexed for cap checks; lists stay sorted because time only moves on."""

    def __init__(self) -> None:
        self.pair: dict[tuple[str, str], list[float]] = {}   # (customer, offer)
        self.customer: dict[str, list[float]] = {}
        self.offer: dict[str, list[float]] = {}
        self.store: list[float] = []
        self.visit: dict[str, list[float]] = {}
        self.pending: list[LedgerEntry] = []
        self.size = 0

    def add(self, e: LedgerEntry, *, new: bool = True) -> None:
        for seq in (self.pair.setdefault((e.customer_id, e.offer_id), []),
                    self.customer.setdefault(e.customer_id, []),
                    self.offer.setdefault(e.offer_id, []), self.visit.setdefault(e.visit_id, []),
                    self.store):
            if seq and seq[-1] > e.ts:
                seq.insert(bisect_left(seq, e.ts), e.ts)   # loaded rows may come unordered
            else:
                seq.append(e.ts)
        self.size += 1
        if new:
            self.pending.append(e)

    def prune(self, before: float) -> None:
        """Forget firing times older than `before` (the longest window in use)."""
        indexes: tuple[dict[Any, list[float]], ...] = (self.pair, self.customer, self.offer,
                                                       self.visit)
        for index in indexes:
            for key in [k for k, v in index.items() if v[-1] < before]:
                del index[key]
            for v in index.values():
                del v[:bisect_left(v, before)]
        del self.store[:bisect_left(self.store, before)]
        self.size = len(self.store)

    def forget(self, customer_id: str) -> None:
        """Erasure: drop what names the customer (store-wide counts keep their times)."""
        self.customer.pop(customer_id, None)
        for key in [k for k in self.pair if k[0] == customer_id]:
            del self.pair[key]
        self.pending = [e for e in self.pending if e.customer_id != customer_id]

    @staticmethod
    def count(seq: list[float] | None, since: float) -> int:
        return len(seq) - bisect_left(seq, since) if seq else 0

    @staticmethod
    def last(seq: list[float] | None) -> float | None:
        return seq[-1] if seq else None
