"""One runtime for every mode: `replay --no-mqtt`, `replay --mqtt` and `offers simulate`
compute the same gateway on the same capture.

Capture: the AGPL Android btsnoop log in ../shared (read there, never bundled). Its one
iBeacon (ecb0583a-.../5891/5) is registered as a consenting gold customer; the busiest other
advertiser's address is on the opt-out list. Before the composition root was shared, the
run without a broker linked nobody and counted the opted-out phone (no identity runtime, no
opt-out list), and the simulation skipped the advert throttle (290 observations instead of
114) and built its own pseudonymizer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from presence_gateway.adapters.identity_store import Registry
from presence_gateway.cli.main import main
from presence_gateway.core.config import load_config
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.sync import SyncChange
from presence_gateway.drivers.registry import create, recording
from presence_gateway.runtime.core import pseudonymizer_for
from tests.sinks import ListSink

CAPTURE = (Path(__file__).resolve().parents[3] / "shared" / "data" / "captures" / "ble"
           / "btsnoop" / "btsnoop_hci20241230_1.log")
BEACON = "ecb0583a-d71b-43d2-a4fd-d5367063032d/5891/5"
CUSTOMER = "cust-ev-owner-7e1"
SECRET = "one-runtime-test-secret-0123456789"
RULES = """version: one-runtime-1
offers:
  - id: welcome-gold
    description: Welcome gold members
    when: {zone: store, segment: {tier: [gold]}}
    limits: {max_per_visit: 1}
    payload: {campaign: WELCOME}
"""

pytestmark = pytest.mark.skipif(not CAPTURE.is_file(),
                                reason=f"{CAPTURE} (AGPL test data in ../shared) is absent")


def setup(tmp_path: Path, broker_url: str) -> tuple[Path, Path, Path]:
    db, rules, cfg_path = tmp_path / "gw.db", tmp_path / "offers.yaml", tmp_path / "gw.yaml"
    rules.write_text(RULES)
    cfg_path.write_text(f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
                        f"mqtt: {{url: '{broker_url}'}}\n"
                        f"storage: {{path: '{db}', batch_interval: 50ms}}\n"
                        "privacy: {secret: 'env:PG_ONE_RUNTIME_SECRET'}\n"
                        f"offers: {{rules: '{rules}'}}\n")
    cfg = load_config(str(cfg_path), env={"PG_ONE_RUNTIME_SECRET": SECRET})
    hasher = pseudonymizer_for(cfg).stable_hash
    sink = ListSink()
    asyncio.run(create(recording(str(CAPTURE), "btsnoop")).run(sink))
    busiest, _ = Counter(s.address for s in sink.sightings
                         if s.kind != "ibeacon").most_common(1)[0]
    entries = parse_import("customer_id,kind,value,consent,segments\n"
                           f"{CUSTOMER},ibeacon,{BEACON},personalization offers,tier=gold\n",
                           "customers.csv", hasher).entries

    async def registry() -> None:
        async with await Registry.open(str(db)) as reg:
            await reg.import_entries(entries, hasher, 0.0)
            await reg.apply_sync(SyncChange("update", 1, opt_out_add=frozenset(
                {hasher(busiest, "address")})), hasher, 0.0)
    asyncio.run(registry())
    return cfg_path, rules, db


def events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def comparable(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the gateway computed: everything but event ids and the stats' shell counters
    (broker connection, outbox depth), which are about publishing."""
    return [(e["topic"], e["type"], e["time"], e["sequence"],
             orjson.dumps(e["data"], option=orjson.OPT_SORT_KEYS))
            for e in evs if e["type"] != "presence.gateway.stats"]


def rows(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name=?", (table,)).fetchone():
            return 0
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def waiting(db: Path) -> int:
    """Outbox rows not acknowledged yet (acknowledged ones are kept for events.resend)."""
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                   .fetchone()[0])
    finally:
        con.close()


def test_replay_with_and_without_broker_and_simulate_agree(
        tmp_path: Path, mosquitto: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_ONE_RUNTIME_SECRET", SECRET)
    broker = mosquitto()
    cfg, rules, db = setup(tmp_path, broker.url)
    dry, wet = tmp_path / "dry.jsonl", tmp_path / "wet.jsonl"
    dry_obs, wet_obs = tmp_path / "dry-obs.jsonl", tmp_path / "wet-obs.jsonl"

    # Runs that change nothing come first; each must leave the database as it found it.
    assert main(["replay", str(CAPTURE), "-c", str(cfg), "--no-mqtt", "--events-out", str(dry),
                 "--observations-out", str(dry_obs)]) == 0
    assert (rows(db, "identity_visits"), rows(db, "offer_ledger"), rows(db, "outbox")) == (0, 0, 0)
    capsys.readouterr()
    assert main(["offers", "simulate", str(rules), str(CAPTURE), "-c", str(cfg),
                 "--db", str(db)]) == 0
    sim = capsys.readouterr()
    assert rows(db, "offer_ledger") == 0
    assert main(["replay", str(CAPTURE), "-c", str(cfg), "--events-out", str(wet),
                 "--observations-out", str(wet_obs)]) == 0
    assert waiting(db) == 0, "everything published was acknowledged"
    assert rows(db, "offer_ledger") >= 1 and rows(db, "identity_visits") >= 1

    d, w = events(dry), events(wet)
    assert comparable(d) == comparable(w)
    assert dry_obs.read_bytes() == wet_obs.read_bytes()
    by_type = Counter(e["type"] for e in d)
    linked = [e for e in d if e["type"] == "presence.identity.linked"]
    offers = [e for e in d if e["type"] == "presence.offer.triggered"]
    assert linked and {e["data"]["customer_id"] for e in linked} == {CUSTOMER}
    assert offers and {e["data"]["offer_id"] for e in offers} == {"welcome-gold"}
    stats = [e for e in d if e["type"] == "presence.gateway.stats"]
    assert stats[-1]["data"]["opted_out"] > 0, "the opted-out phone must stop at the boundary"

    # The simulation is the same gateway: same observations, visits, links and offers.
    n_obs = len(dry_obs.read_bytes().splitlines())
    assert f"observations {n_obs}," in sim.err
    assert (f"visits {by_type['presence.visit.started']}, linked to a customer {len(linked)}"
            in sim.err)
    simulated = [orjson.loads(line) for line in sim.out.splitlines()]
    assert [(e["time"], e["data"]) for e in simulated] == [(e["time"], e["data"])
                                                          for e in offers]
