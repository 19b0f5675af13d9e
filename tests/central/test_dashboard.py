"""The dashboard over a central database filled from real replayed captures.

HTTP tests check access (no session: login page and 401s; roles), the JSON API against the
database's own numbers, and CSV; browser tests load each page in headless Chromium (Debian's
`chromium`), compare what is shown with the database, count the chart's points, watch the
live view update when a new event is stored, and save screenshots under build/artifacts/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from presence_gateway.adapters.http import listening
from presence_gateway.adapters.mosquitto import free_port
from presence_gateway.central.dashboard import queries
from presence_gateway.central.dashboard.aggregate import day_window
from presence_gateway.central.dashboard.app import Dashboard
from presence_gateway.central.dashboard.auth import Auth, User, hash_password
from presence_gateway.central.db import Commit, open_db
from presence_gateway.central.model import Event
from presence_gateway.cli.demo import demo_captures
from tests.browser import browser, chromium
from tests.central.dashboard_data import BRNO, GATEWAY, OTHER, STORE, TZ, commit, replayed_messages

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "artifacts"
DAY = "2023-02-16"
# A clock inside the capture's day (store time), so "today" is the replayed day.
NOW = datetime(2023, 2, 16, 23, 30, tzinfo=ZoneInfo(TZ)).timestamp()
pytestmark = pytest.mark.skipif(not BRNO.exists(), reason=f"{BRNO} missing (../shared)")
USERS = [User("admin", "admin", hash_password("admin-pass-1")),
         User("maria", "marketer", hash_password("maria-pass-1"))]


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("central")
    path = tmp / "central.db"
    asyncio.run(commit(f"sqlite:///{path}", replayed_messages(tmp)
                       + replayed_messages(tmp, OTHER, demo_captures())))
    yield path


@pytest.fixture(scope="module")
def simulations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `offers simulate --report` of the scripted visit (tests/test_offers_cli.py):
    Alice's offer fires once, Bob's is stopped by consent, the evening rule by its hours."""
    from presence_gateway.cli.main import main
    from tests.test_offers_cli import write_files
    tmp = tmp_path_factory.mktemp("sim")
    f = write_files(tmp)
    folder = tmp / "reports"
    folder.mkdir()
    assert main(["offers", "simulate", str(f["rules"]), str(f["capture"]), "-c", str(f["config"]),
                 "--identities", str(f["identities"]), "--report",
                 str(folder / "s1-2025-06-02.json")]) == 0
    return folder


@pytest.fixture
async def site(central: Path, simulations: Path) -> AsyncIterator[tuple[str, Dashboard]]:
    db = await open_db(f"sqlite:///{central}")
    await queries.prepare(db)
    clock = [NOW]
    dash = Dashboard(db, Auth(USERS), timezones={STORE: TZ}, default_tz=TZ,
                     rules=["welcome-gold", "never-fires"], simulations=str(simulations),
                     clock=lambda: clock[0])
    try:
        async with listening(dash.app(), "127.0.0.1", free_port(), shutdown_timeout=0.5) as base:
            yield base, dash
    finally:
        await db.close()


def db_truth(path: Path) -> dict[str, Any]:
    start, end = day_window(datetime.fromisoformat(DAY).date(), TZ)
    conn = sqlite3.connect(path)
    try:
        q = conn.execute("SELECT sum(entries), sum(passers_by), count(*) FROM footfall WHERE"
                         " store = ? AND time >= ? AND time < ?", (STORE, start, end)).fetchone()
        return {"visits": q[0] or 0, "passers_by": q[1] or 0, "minutes": q[2]}
    finally:
        conn.close()


def client() -> aiohttp.ClientSession:
    """No proxy from the environment; cookies for an IP host (aiohttp drops them by default)."""
    return aiohttp.ClientSession(trust_env=False, cookie_jar=aiohttp.CookieJar(unsafe=True))


LAST_SET_COOKIE: list[str] = []


async def login(http: aiohttp.ClientSession, base: str, user: str, password: str) -> int:
    async with http.post(base + "/login", data={"username": user, "password": password},
                         allow_redirects=False) as r:
        LAST_SET_COOKIE[:] = r.headers.getall("Set-Cookie", [])
        return r.status


async def test_without_a_session_only_the_login_page(site: tuple[str, Dashboard]) -> None:
    base, _ = site
    async with client() as http:
        async with http.get(base + "/", allow_redirects=False) as r:
            assert r.status in (302, 303) and r.headers["Location"] == "/login"
        async with http.get(base + "/") as r:
            assert r.status == 200 and "<form method=\"post\" action=\"/login\">" in await r.text()
        for path in ("/api/stores", "/api/stores/x/day", "/api/health", "/api/me",
                     "/export/stores.csv"):
            async with http.get(base + path) as r:
                assert r.status == 401, path
        assert await login(http, base, "admin", "wrong") == 303
        async with http.get(base + "/api/stores") as r:
            assert r.status == 401, "a failed login gives no session"


async def test_api_numbers_are_the_databases(site: tuple[str, Dashboard], central: Path) -> None:
    base, _ = site
    truth = db_truth(central)
    assert truth["minutes"] > 60, "the replay filled a day of footfall"
    async with client() as http:
        assert await login(http, base, "admin", "admin-pass-1") == 303
        [cookie] = LAST_SET_COOKIE
        assert cookie.startswith("pg_session=") and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        async with http.get(base + "/api/stores") as r:
            stores = await r.json()
        [row] = [s for s in stores if s["store"] == STORE]
        assert {"store", "visits_today", "present_now"} <= set(row)
        assert row["visits_today"] == truth["visits"] and row["date"] == DAY
        async with http.get(base + f"/api/stores/{STORE}/day") as r:
            day = await r.json()
        assert len(day["present_people_est"]) == truth["minutes"]
        low, high = day["totals"]["present_now_interval"]  # the last footfall's, from the event
        assert low <= day["totals"]["present_now_people_est"] <= high
        assert day["totals"]["passers_by"] == truth["passers_by"]
        assert sum(day["per_hour"]["entries"]) == truth["visits"]
        async with http.get(base + f"/export/hours.csv?store={STORE}&date={DAY}") as r:
            hours = list(csv.DictReader(io.StringIO(await r.text())))
        assert sum(int(h["entries"]) for h in hours) == truth["visits"] and len(hours) == 24
        async with http.get(base + "/api/health") as r:
            gws = await r.json()
        assert {g["store"] for g in gws} == {STORE, OTHER}
        assert all(g["status"] == "online" and g["last_sequence"] > 0 for g in gws)
        # Wi-Fi placement from the last stats: the class day's busy windows taught its sensor
        # (the reference spot: 0 dB); the demo's empty Wi-Fi day taught nothing, so cautious
        placement = {g["store"]: g["counting"] for g in gws}
        assert placement[STORE] == f"{GATEWAY}: offset 0 dB learnt", placement
        assert placement[OTHER] == f"{GATEWAY}: cautious, placement not learnt yet", placement


async def test_a_marketer_sees_aggregates_not_fleet_health(site: tuple[str, Dashboard]) -> None:
    base, _ = site
    async with client() as http:
        assert await login(http, base, "maria", "maria-pass-1") == 303
        async with http.get(base + "/api/health") as r:
            assert r.status == 403
        async with http.get(base + "/health") as r:
            assert r.status == 403
        async with http.get(base + "/api/campaigns") as r:
            rules = {x["offer_id"]: x for x in (await r.json())["rules"]}
        assert rules["never-fires"]["fired"] == 0
        async with http.get(base + f"/api/stores/{STORE}/day") as r:
            assert b'"device"' not in await r.read(), "no device key reaches a marketer"


def footfall_event(seq: int, t: str, present: float) -> Event:
    data = {"present": present, "present_interval": [5, 9], "entries": 2, "exits": 0,
            "passers_by": 1, "zones": {}}
    return Event(f"live-{seq}", STORE, "gw-entrance", seq, "presence.footfall", t, STORE, data, 0)


pytestmark_browser = pytest.mark.skipif(chromium() is None,
                                        reason="chromium not installed (Debian: chromium)")


@pytestmark_browser
async def test_pages_in_chromium(site: tuple[str, Dashboard], central: Path) -> None:
    base, dash = site
    truth = db_truth(central)
    async with browser() as page:
        await page.goto(base + "/")
        assert await page.js("location.pathname") == "/login"
        await page.screenshot(ARTIFACTS / "dashboard-login.png")
        await page.js("document.querySelector('input[name=username]').value = 'admin';"
                      "document.querySelector('input[name=password]').value = 'admin-pass-1';"
                      "document.querySelector('form').submit()")
        await page.wait("location.pathname === '/' && document.body.dataset.ready === '1'")
        cells = await page.js("[...document.querySelectorAll('#stores tbody tr')].map("
                              "tr => [...tr.cells].map(td => td.textContent))")
        [row] = [c for c in cells if c[0] == STORE]
        assert row[1].replace(",", "") == str(truth["visits"])
        await page.screenshot(ARTIFACTS / "dashboard-chain.png")

        await page.goto(base + f"/store/{STORE}")
        await page.wait("document.body.dataset.ready === '1'")
        assert await page.js("document.querySelector('#t-visits').textContent.replace(/,/g,'')"
                             ) == str(truth["visits"])
        points = int(await page.js("document.querySelector('#occupancy').dataset.points"))
        assert points == truth["minutes"]
        assert await page.js("!!document.querySelector('#occupancy canvas')")
        await page.wait("!document.querySelector('#live').hidden")
        await page.screenshot(ARTIFACTS / "dashboard-store.png")
        # A new footfall interval is stored (as the consumer would): the page updates itself.
        db = dash.db
        await db.commit(Commit(events=[footfall_event(10**6, "2023-02-16T22:29:00.000Z",
                                                      7.0)]))
        await page.wait("Number(document.body.dataset.updates || 0) >= 1", within_s=10)
        assert await page.js("document.querySelector('#t-now').textContent") == "7.0 (5.0–9.0)"
        assert int(await page.js("document.querySelector('#occupancy').dataset.points")) == \
            truth["minutes"] + 1

        for path, shot in (("/campaigns", "dashboard-campaigns.png"),
                           ("/health", "dashboard-health.png")):
            await page.goto(base + path)
            await page.wait("document.body.dataset.ready === '1'")
            await page.screenshot(ARTIFACTS / shot)
            if path == "/campaigns":
                why = await page.js("[...document.querySelectorAll('#whynot tbody tr')].map("
                                    "tr => [...tr.cells].map(td => td.textContent))")
                assert ["store-gold-3m", "1", "1 × customer did not consent to offers"] in why
                assert any(r[0] == "evening-only" and "outside its hours" in r[2] for r in why)
        assert await page.js("document.querySelectorAll('#gateways tbody tr').length") == 2
        shown = await page.js("[...document.querySelectorAll('#gateways tbody tr')].map("
                              "tr => tr.cells[7].textContent)")
        assert sorted(shown) == sorted([f"{GATEWAY}: offset 0 dB learnt",
                                        f"{GATEWAY}: cautious, placement not learnt yet"])
        await page.js("document.querySelector('form.logout').submit()")
        await page.wait("location.pathname === '/login'")
        await page.goto(base + f"/store/{STORE}")
        assert await page.js("location.pathname") == "/login", "logged out: login page again"
    _ = orjson  # payloads above are compared as text


def test_store_day_from_rows() -> None:
    """The aggregation alone: hours in store time, walk-in dwell, paths, capture rate."""
    from presence_gateway.central.dashboard.aggregate import Row, store_day
    rows = [Row("presence.footfall", "2023-02-16T10:05:00.000Z",
                {"present": 3.2, "entries": 2, "exits": 0, "passers_by": 6,
                 "zones": {"a": {"present": 1.0}, "b": {"present": 2.2}}}),
            Row("presence.visit.ended", "2023-02-16T10:30:00.000Z",
                {"classification": "visitor", "duration_s": 700.0, "zones": ["a", "b", "a"]}),
            Row("presence.visit.ended", "2023-02-16T10:31:00.000Z",
                {"classification": "passer_by", "duration_s": 20.0}),
            Row("presence.identity.linked", "2023-02-16T10:10:00.000Z", {"visit_id": "v1"}),
            Row("presence.offer.triggered", "2023-02-16T10:11:00.000Z", {"offer_id": "o1"})]
    d = store_day(rows, TZ)
    assert d["per_hour"]["entries"][11] == 2  # 10:05 UTC is 11:05 in Prague (CET)
    t = d["totals"]
    assert (t["visits"], t["passers_by"], t["capture_rate"]) == (2, 6, 0.25)
    assert t["median_dwell_s"] == 700.0 and t["identified_visits"] == 1
    assert d["paths"] == {"a → b": 1, "b → a": 1} and d["offers"] == {"o1": 1}
    assert [b["visits"] for b in d["dwell_histogram"] if b["label"] == "10-20 min"] == [1]
