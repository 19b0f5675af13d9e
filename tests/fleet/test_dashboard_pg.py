"""The dashboard over PostgreSQL (a chain's central database): the same numbers as the
database, through the same queries the SQLite tests use (placeholders, JSON, time ranges)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from presence_gateway.adapters.http import listening
from presence_gateway.adapters.mosquitto import free_port
from presence_gateway.central.dashboard import queries
from presence_gateway.central.dashboard.aggregate import day_window
from presence_gateway.central.dashboard.app import Dashboard
from presence_gateway.central.dashboard.auth import Auth, User, hash_password
from presence_gateway.central.db import open_db
from tests.central.dashboard_data import BRNO, GATEWAY, STORE, TZ, commit, replayed_messages
from tests.central.test_dashboard import DAY, NOW

pytestmark = pytest.mark.skipif(not BRNO.exists(), reason=f"{BRNO} missing (../shared)")


async def test_api_over_postgresql(pg_url: str, tmp_path: Path) -> None:
    import asyncio
    messages = await asyncio.to_thread(replayed_messages, tmp_path)
    await commit(pg_url, messages)
    db = await open_db(pg_url)
    try:
        await queries.prepare(db)
        from datetime import date
        start, end = day_window(date.fromisoformat(DAY), TZ)
        visits = int(await db.fetchval("SELECT sum(entries) FROM footfall WHERE store = ? AND"
                                       " time >= ? AND time < ?", STORE, start, end) or 0)
        minutes = int(await db.fetchval("SELECT count(*) FROM footfall WHERE store = ? AND"
                                        " time >= ? AND time < ?", STORE, start, end))
        auth = Auth([User("admin", "admin", hash_password("admin-pass-1"))])
        dash = Dashboard(db, auth, timezones={STORE: TZ}, default_tz=TZ, clock=lambda: NOW)
        async with listening(dash.app(), "127.0.0.1", free_port()) as base:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(trust_env=False, cookie_jar=jar) as http:
                await http.post(base + "/login", data={"username": "admin",
                                                       "password": "admin-pass-1"})
                async with http.get(base + "/api/stores") as r:
                    [row] = await r.json()
                async with http.get(base + f"/api/stores/{STORE}/day") as r:
                    day = await r.json()
                async with http.get(base + "/api/campaigns") as r:
                    assert r.status == 200
                async with http.get(base + "/api/health") as r:
                    [gw] = await r.json()
    finally:
        await db.close()
    assert minutes > 60 and row["visits_today"] == visits
    assert len(day["present_people_est"]) == minutes
    assert gw["store"] == STORE and gw["status"] == "online"
    assert gw["counting"] == f"{GATEWAY}: offset 0 dB learnt"  # from its last stats


async def test_an_older_database_gets_the_placement_column(pg_url: str) -> None:
    # A central database made before `gateways.counting` existed: opening it adds the column
    # (ADD COLUMN IF NOT EXISTS: consumers starting together hold the schema lock anyway).
    db = await open_db(pg_url)
    try:
        await db.execute("INSERT INTO gateways (key, store, gateway, last_sequence) VALUES"
                         " ('s1/gw0', 's1', 'gw0', 41)")
        await db.execute("ALTER TABLE gateways DROP COLUMN counting")
    finally:
        await db.close()
    db = await open_db(pg_url)
    try:
        [gw] = await queries.health(db)
        assert gw["last_sequence"] == 41 and gw["counting"] is None
    finally:
        await db.close()
