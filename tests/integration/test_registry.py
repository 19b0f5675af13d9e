"""Identity registry on real SQLite: CLI import/list/remove/forget, erasure, 0600, purge, sync.

The forget test shares one file with the real outbox (gateway.store) and the real offer ledger
(gateway.offers_store), fills them through the real linker and envelope, and then scans every
row of every table and the raw file bytes for the customer id and the secrets.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from presence_gateway.adapters.identity_store import Registry
from presence_gateway.adapters.offer_store import OfferLedgerStore
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.cli.main import main as gateway_cli
from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import IdentityIndex
from presence_gateway.core.identity.link import Linker, VisitRecord
from presence_gateway.core.identity.resolve import ah
from presence_gateway.core.identity.sync import FORMAT, SyncChange, SyncRejected, check, sign
from presence_gateway.core.model import AddressKind, Observation, Radio, Sighting
from presence_gateway.core.offers.ledger import LedgerEntry
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.errors import StoreError
from tests.events import make

SECRET = "registry-test-secret-0123456789"
HASH = Pseudonymizer(SECRET.encode()).stable_hash
IRK = "ec0234a357c8ad05341010a60a397d9b"
EID_KEY = "e2c56db5dffb48d2b060d0f5a71096e0"
APP = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
UUID = "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"  # the retailer app's (public) UUID
BEACON = "e20a39f4-73f5-4bc4-a12f-17d1ad07a961"  # a beacon issued to one customer
MAC = "3c:22:fb:12:34:56"
SECRETS = (IRK, EID_KEY, APP)
RAW_IDS = (BEACON, BEACON.replace("-", ""), MAC, MAC.replace(":", ""))
GONE = "cust-forget-me"
KEEP = "cust-keep"
CSV = f"""customer_id,kind,value,consent,segments,expires
{GONE},irk,{IRK},personalization analytics offers,tier=gold,
{GONE},eddystone_eid,{EID_KEY}/10,personalization,,
{GONE},app_token,{UUID}/{APP},offers personalization,,
{KEEP},ibeacon,{BEACON}/7/9,analytics,tier=silver,2031-01-01
{KEEP},wifi_mac,{MAC},personalization,,
"""
T0 = 1_767_225_600.0


def main(argv: list[str]) -> int:
    return gateway_cli(["identities", *argv])


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    monkeypatch.setenv("PG_TEST_SECRET", SECRET)
    db = tmp_path / "var" / "gw.db"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"privacy:\n  secret: env:PG_TEST_SECRET\nstorage:\n  path: {db}\n"
                   f"identity:\n  app_token:\n    uuid: {UUID}\n")
    src = tmp_path / "customers.csv"
    src.write_text(CSV)
    return cfg, db, src


async def cli(argv: list[str]) -> int:
    """The CLI runs its own event loop (asyncio.run), so async tests run it in a thread."""
    return await asyncio.to_thread(main, argv)


def all_rows(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        out: list[str] = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):
                out.extend(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
        return out
    finally:
        conn.close()


def raw_bytes(db: Path) -> bytes:
    return b"".join(Path(str(db) + s).read_bytes() for s in ("", "-wal")
                    if Path(str(db) + s).exists())


def test_import_list_without_secrets_and_mode_0600(setup: tuple[Path, Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, src = setup
    assert main(["import", str(src), "-c", str(cfg)]) == 0
    assert "imported 5 entries" in capsys.readouterr().out
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, suffix
    assert main(["-c", str(cfg), "list"]) == 0
    table = capsys.readouterr().out
    assert GONE in table and KEEP in table and "tier=silver" in table and "5 entries" in table
    assert main(["list", "--json", "--db", str(db)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["kind"] for x in lines} == {"irk", "eddystone_eid", "app_token", "ibeacon",
                                          "wifi_mac"}
    for text in (table, json.dumps(lines)):
        for s in SECRETS + RAW_IDS:
            assert s not in text.lower()
    # raw beacon ids and MACs are not stored at all; the secrets only in the entries table
    stored = " ".join(all_rows(db)).lower()
    assert not any(r in stored for r in RAW_IDS)
    # importing the same file again updates in place
    assert main(["import", str(src), "-c", str(cfg)]) == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM identity_entries").fetchone()[0] == 5
    conn.close()


def test_import_refuses_random_secret_and_bad_files(setup: tuple[Path, Path, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, src = setup
    assert main(["import", str(src), "--db", str(db)]) == 2  # built-in config: random secret
    assert "needs a stable secret" in capsys.readouterr().err
    assert not db.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV + "x,irk,nothex,offers,,\n")
    assert main(["import", str(bad), "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:7 value: expected a 16-byte IRK (hex or base64)" in err
    assert "nothing imported" in err and not db.exists()
    assert main(["list", "--db", str(tmp_path / "missing.db")]) == 1
    assert main(["bogus"]) == 2


async def test_forget_erases_every_trace(setup: tuple[Path, Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg, db, src = setup
    assert await cli(["import", str(src), "-c", str(cfg)]) == 0
    capsys.readouterr()
    async with await Outbox.open(str(db), max_rows=1000, max_age_s=86400) as outbox:
        reg = await Registry.attach(outbox)
        state = await reg.load(HASH)
        index = IdentityIndex(HASH, state.entries, app_uuid=UUID)
        linker = Linker(index.get)
        boundary = Boundary(Pseudonymizer(SECRET.encode()), resolver=index)
        prand = bytes.fromhex("708194")
        s = Sighting(T0, Radio.BLE, prand + ah(bytes.fromhex(IRK), prand),
                     AddressKind.RESOLVABLE, -60, None, "apple")
        obs = boundary.admit(s)
        assert obs is not None and obs.identity is not None
        linker.observe(obs)
        events = linker.decorate([make("presence.visit.started", T0,
                                        {"visit_id": "v1", "device": obs.device})])
        assert [e.data.get("customer_id") for e in events] == [GONE, GONE]
        env = Envelope(topics=Topics("presence", "s1", "gw1"), source="s1/gw1")
        await outbox.append([env.wrap(e) for e in events])
        await reg.add_visits([*linker.take_visits(), VisitRecord(KEEP, "v0", T0 - 10)])
        ledger = OfferLedgerStore(outbox)
        await ledger.init()
        await ledger.append([LedgerEntry(T0, "shoes", GONE, "v1"),
                             LedgerEntry(T0, "shoes", KEEP, "v0")])
    before = " ".join(all_rows(db))
    assert GONE in before and IRK in before and APP in before
    assert await cli(["forget", GONE, "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (f"forgot {GONE}: 3 entries, 1 visits, 1 in offer_ledger,"
                           " 2 in outbox")
    after = " ".join(all_rows(db))
    for trace in (GONE, IRK, EID_KEY, APP):
        assert trace not in after
    blob = raw_bytes(db)
    for trace in (GONE, IRK, EID_KEY, APP):
        assert trace.encode() not in blob
    for raw in (IRK, EID_KEY, APP):
        assert bytes.fromhex(raw) not in blob
    assert KEEP in after  # the other customer is untouched
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


async def test_remove_one_entry(setup: tuple[Path, Path, Path]) -> None:
    cfg, db, src = setup
    assert await cli(["import", str(src), "-c", str(cfg)]) == 0
    async with await Registry.open(str(db)) as reg:
        irk_id = next(e.entry_id for e in await reg.list_entries() if e.kind == "irk")
    assert await cli(["remove", irk_id, "--db", str(db)]) == 0
    assert await cli(["remove", irk_id, "--db", str(db)]) == 1
    assert IRK not in " ".join(all_rows(db)) and IRK.encode() not in raw_bytes(db)


async def test_purge_with_a_moving_clock(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    day = 86400.0
    async with await Registry.open(db) as reg:
        parsed = parse_import(f"customer_id,kind,value,consent,expires\n"
                              f"a,irk,{IRK},offers,2026-01-10\nb,irk,{EID_KEY},offers,\n",
                              "p.csv", HASH)
        await reg.import_entries(parsed.entries, HASH, T0)
        await reg.add_visits([VisitRecord("a", f"v{i}", T0 - d * day)
                              for i, d in enumerate((45, 29, 10, 0))])
        clock = T0
        purged = await reg.purge(clock, 30)
        assert (purged.visits, purged.expired_entries) == (1, 0)
        clock += 5 * day  # 2026-01-06: the visit from 29 days before T0 is now 34 days old
        purged = await reg.purge(clock, 30)
        assert (purged.visits, purged.expired_entries) == (1, 0)
        clock += 5 * day  # past a's expiry (end of 2026-01-10 is T0 + 10 days)
        purged = await reg.purge(clock, 30)
        assert (purged.visits, purged.expired_entries) == (0, 1)
        assert [e.customer_id for e in await reg.list_entries()] == ["b"]
        clock += 30 * day
        assert (await reg.purge(clock, 30)).visits == 2
        assert await reg.visits() == []


def sync_payload(kind: str, version: int, **fields: object) -> bytes:
    body = {"format": FORMAT, "type": kind, "store": "s1", "version": version, **fields}
    return sign(json.dumps(body).encode(), b"sync-key-0123456789abcdef")


async def test_sync_apply_load_and_rejection_changes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    key = b"sync-key-0123456789abcdef"
    async with await Registry.open(db) as reg:
        snap = sync_payload("snapshot", 3, entries=[
            {"id": "c1-irk", "customer_id": "c1", "kind": "irk", "value": IRK,
             "consent": "personalization"}], opt_out=[MAC])
        change = check(snap, kind="snapshot", store="s1", key=key,
                       current_version=await reg.sync_version(), hasher=HASH)
        assert isinstance(change, SyncChange)
        await reg.apply_sync(change, HASH, T0)
        state = await reg.load(HASH)
        assert state.version == 3 and [e.entry_id for e in state.entries] == ["c1-irk"]
        boundary = Boundary(Pseudonymizer(SECRET.encode()), opt_out=state.opt_out)
        opted = Sighting(T0, Radio.WIFI, bytes.fromhex(MAC.replace(":", "")),
                         AddressKind.PUBLIC, -50, 6, "probe_request")
        assert boundary.admit(opted) is None and boundary.stats.opted_out == 1
        snapshot_rows = all_rows(Path(db))
        gap = sync_payload("update", 5, delete_customers=["c1"])
        bad = check(gap, kind="update", store="s1", key=key, current_version=3, hasher=HASH)
        assert isinstance(bad, SyncRejected) and bad.reason == "out_of_order"
        assert all_rows(Path(db)) == snapshot_rows
        upd = sync_payload("update", 4, delete_customers=["c1"], opt_out_remove=[MAC])
        change = check(upd, kind="update", store="s1", key=key, current_version=3,
                       hasher=HASH)
        assert isinstance(change, SyncChange)
        erased = await reg.apply_sync(change, HASH, T0)
        assert erased.entries == 1
        state = await reg.load(HASH)
        assert (state.version, state.entries, state.opt_out) == (4, [], frozenset())
        other = Pseudonymizer(b"another-secret-0123456789abc").stable_hash
        with pytest.raises(StoreError, match=r"different privacy\.secret"):
            await reg.load(other)


def test_observation_identity_is_not_a_customer_id() -> None:
    # The boundary's identity is the registry entry id, an opaque keyed hash, never the
    # customer id: an observation written out by mistake still names nobody.
    entries = list(parse_import(CSV, "c.csv", HASH).entries)
    assert all(GONE not in e.entry_id and KEEP not in e.entry_id for e in entries)
    obs = Observation(T0, Radio.BLE, "k", AddressKind.RESOLVABLE, -60, None, "x",
                      identity=entries[0].entry_id)
    assert GONE not in repr(obs)


async def test_runtime_sync_reload_and_visits_on_the_outbox_file(tmp_path: Path) -> None:
    from presence_gateway.core.identity.config import IdentitySettings
    from presence_gateway.runtime.identity import IdentityRuntime

    db = str(tmp_path / "gw.db")
    key = b"sync-key-0123456789abcdef"
    pseudo = Pseudonymizer(SECRET.encode())
    settings = IdentitySettings(sync_key=key, app_uuid=UUID)
    async with await Outbox.open(db, max_rows=1000, max_age_s=86400) as outbox:
        rt = await IdentityRuntime.start(outbox, pseudo, settings, prefix="presence", store="s1")
        # As the control plane does: the boundary takes the opt-out list after each change.
        boundary = Boundary(pseudo, resolver=rt.index, opt_out=rt.opt_out)
        snap_topic, upd_topic = rt.topics
        assert snap_topic == "presence/v1/s1/identity/snapshot"
        snap = sync_payload("snapshot", 1, entries=[
            {"id": "c1-irk", "customer_id": "c1", "kind": "irk", "value": IRK,
             "consent": "personalization offers"}], opt_out=[MAC])
        assert await rt.on_message(snap_topic, snap, T0) == []
        assert await rt.on_message(snap_topic, snap, T0) == []  # retained again: ignored
        boundary.replace_opt_out(rt.opt_out)
        prand = bytes.fromhex("708194")
        obs = boundary.admit(Sighting(T0, Radio.BLE, prand + ah(bytes.fromhex(IRK), prand),
                                         AddressKind.RESOLVABLE, -60, None, "apple"))
        assert obs is not None and obs.identity == "c1-irk"
        opted = Sighting(T0, Radio.WIFI, bytes.fromhex(MAC.replace(":", "")),
                         AddressKind.PUBLIC, -50, 6, "probe_request")
        assert boundary.admit(opted) is None
        rt.linker.observe(obs)
        rt.linker.decorate([make("presence.visit.started", T0,
                                  {"visit_id": "v1", "device": obs.device})])
        await rt.flush()
        assert [v.customer_id for v in await rt.registry.visits()] == ["c1"]
        good = sync_payload("update", 2, delete_customers=["c1"])
        forged = good[:-1] + bytes([good[-1] ^ 1])  # one bit of the tag
        (rejected,) = await rt.on_message(upd_topic, forged, T0 + 1)
        assert rejected.type == "presence.command.rejected"
        assert rejected.data["reason"] == "unauthenticated" and rt.index.get("c1-irk")
        # another process (the CLI) imports while the service runs: picked up on reload
        async with await Registry.open(db) as other:
            parsed = parse_import(f"customer_id,kind,value,consent\nc2,irk,{EID_KEY},offers\n",
                                  "x.csv", HASH)
            await other.import_entries(parsed.entries, HASH, T0)
        assert await rt.reload_if_changed() is True
        assert {e.customer_id for e in rt.index.entries()} == {"c1", "c2"}
        assert await rt.reload_if_changed() is False
        upd = sync_payload("update", 2, delete_customers=["c1"], opt_out_remove=[MAC])
        assert await rt.on_message(upd_topic, upd, T0 + 2) == []
        boundary.replace_opt_out(rt.opt_out)
        assert rt.index.get("c1-irk") is None and boundary.admit(opted) is not None
        assert rt.linker.visits_in_last("c1", 30, T0) == 0
    assert "c1" not in " ".join(all_rows(Path(db))).split()


def test_list_refuses_another_secret_and_shows_the_day_an_entry_is_valid_through(
        setup: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _db, src = setup
    assert main(["import", str(src), "-c", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if KEEP in line
               and "ibeacon" in line)
    assert "2031-01-01" in row and "2031-01-02" not in row  # imported as `2031-01-01`
    monkeypatch.setenv("PG_TEST_SECRET", "another-secret-0123456789abcdef")
    assert main(["-c", str(cfg), "list"]) == 1
    err = capsys.readouterr().err
    assert "written under a different privacy.secret" in err
