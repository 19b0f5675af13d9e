"""The offer ledger in a real SQLite file next to the outbox: caps survive a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from presence_gateway.adapters.offer_store import TABLE, OfferLedgerStore, append_in
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.core.events import Event
from presence_gateway.core.model import OutboundMessage
from presence_gateway.core.offers.engine import LedgerEntry, OfferEngine
from presence_gateway.core.offers.rules import parse_rules
from tests.events import make

T0 = 1_748_858_400.0  # 2025-06-02 12:00 Europe/Berlin, a Monday
RULES = parse_rules("""\
offers:
  - id: cafe-hello
    description: hello at the cafe
    when: {zone: cafe}
    limits: {per_customer: {day: 1}}
""", "offers.yaml", zones={"cafe"})


@dataclass(frozen=True, slots=True)
class Customer:
    consent: frozenset[str] = frozenset({"offers"})
    segments: Mapping[str, str] = field(default_factory=dict)


class Registry:
    def customer(self, customer_id: str) -> Customer:
        return Customer()

    def visits_in_last(self, customer_id: str, days: float, now: float) -> int:
        return 1


def engine() -> OfferEngine:
    return OfferEngine(RULES, timezone="Europe/Berlin", store_id="s1", context=Registry())


def enter(visit: str, customer: str, t: float) -> list[Event]:
    return [make("presence.zone.entered", t, {"visit_id": visit, "customer_id": customer,
                                              "zone": "cafe"})]


async def open_outbox(path: Path) -> Outbox:
    return await Outbox.open(str(path), max_rows=1000, max_age_s=86400.0)


async def test_caps_survive_a_restart_through_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with await open_outbox(db) as outbox:
        store = OfferLedgerStore(outbox)
        await store.init()
        first = engine()
        assert len(first.on_events(enter("v1", "alice", T0), T0)) == 1
        assert len(first.on_events(enter("v2", "bob", T0 + 60), T0 + 60)) == 1
        await store.append(first.ledger_entries())
    # A new process: new outbox connection, new engine, the rows loaded back.
    async with await open_outbox(db) as outbox:
        store = OfferLedgerStore(outbox)
        await store.init()  # idempotent
        rows = await store.load(T0 - RULES.horizon_s)
        assert rows == [LedgerEntry(T0, "cafe-hello", "alice", "v1"),
                        LedgerEntry(T0 + 60, "cafe-hello", "bob", "v2")]
        again = engine()
        again.load_ledger(rows)
        assert again.on_events(enter("w1", "alice", T0 + 3600), T0 + 3600) == []
        assert dict(again.suppressed) == {("cafe-hello", "per_customer_day"): 1}
        assert len(again.on_events(enter("w2", "carol", T0 + 3600), T0 + 3600)) == 1


async def test_prune_forget_and_the_erasure_contract(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with await open_outbox(db) as outbox:
        store = OfferLedgerStore(outbox)
        await store.init()
        await store.append([LedgerEntry(T0 - 30 * 86400, "x", "old", "v0"),
                            LedgerEntry(T0, "x", "alice", "v1"),
                            LedgerEntry(T0 + 1, "y", "alice", "v1"),
                            LedgerEntry(T0 + 2, "x", "bob", "v2")])
        assert await store.prune(T0 - RULES.horizon_s) == 1
        assert await store.forget("alice") == 2
        assert [r.customer_id for r in await store.load(0.0)] == ["bob"]
    # What the identity shell's forget(customer) relies on: this table, this column.
    with sqlite3.connect(db) as conn:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")]
        assert TABLE == "offer_ledger" and "customer_id" in cols
        conn.execute(f"DELETE FROM {TABLE} WHERE customer_id = ?", ("bob",))
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] == 0


async def test_ledger_rows_commit_with_the_offer_messages_or_not_at_all(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with await open_outbox(db) as outbox:
        store = OfferLedgerStore(outbox)
        await store.init()
        row = LedgerEntry(T0, "cafe-hello", "alice", "v1")
        try:
            async with outbox.transaction() as conn:
                await append_in(conn, [row])
                raise RuntimeError("crash before the outbox insert")
        except RuntimeError:
            pass
        assert await store.load(0.0) == []
        async with outbox.transaction() as conn:
            await append_in(conn, [row])
        await outbox.append([OutboundMessage("id1", 1, "t", b"{}")])
        assert await store.load(0.0) == [row] and await outbox.depth() == 1
