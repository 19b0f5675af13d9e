"""Dashboard page load over a 30-day, 20-store central database (SQLite).

The events are real: one replay of the Brno lab's 2023-02-16 capture through the gateway
(from ../shared), parsed by the central model, then copied to 20 stores x 30 days with the
times shifted by whole days and fresh ids, and committed through the central database as the
consumer would. Timed (median, min-max of N rounds, after one warm-up): the JSON calls behind
each view, and the whole store page in headless Chromium (navigation to charts drawn).

    python -m bench.dashboard [--stores 20] [--days 30] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from presence_gateway.adapters.http import listening
from presence_gateway.adapters.mosquitto import free_port
from presence_gateway.central.dashboard import queries
from presence_gateway.central.dashboard.app import Dashboard
from presence_gateway.central.dashboard.auth import Auth, User, hash_password
from presence_gateway.central.db import Commit, open_db
from presence_gateway.central.model import Event, parse, projection
from tests.central.dashboard_data import BRNO, TZ, replayed_messages


def shifted(ev: Event, store: str, days: int) -> Event:
    t = datetime.fromisoformat(ev.time.replace("Z", "+00:00")) + timedelta(days=days)
    return dataclasses.replace(ev, id=f"{ev.id}-{store}-{days}", store=store,
                               time=t.strftime("%Y-%m-%dT%H:%M:%S.") + ev.time[20:])


async def fill(url: str, events: list[Event], stores: int, days: int) -> int:
    """The consumer's rows (events + projections, as CentralDb.commit writes them), bulk
    inserted: the consumer's own pace is bench.fleet's figure, not this one's."""
    db = await open_db(url)  # creates the schema
    await db.commit(Commit(positions={f"store-{s:03d}/gw-1": (f"store-{s:03d}", "gw-1", 1)
                                      for s in range(stores)}))
    await db.close()
    return await asyncio.to_thread(_bulk, url[len("sqlite:///"):], events, stores, days)


def _bulk(path: str, events: list[Event], stores: int, days: int) -> int:
    conn = sqlite3.connect(path)
    n = 0
    with conn:
        for s in range(stores):
            store = f"store-{s:03d}"
            for d in range(days):
                batch = [shifted(e, store, -d) for e in events]
                conn.executemany(
                    "INSERT INTO events (id, store, gateway, seq, type, time, subject, data,"
                    " received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                    [(e.id, e.store, e.gateway, e.seq, e.type, e.time, e.subject,
                      orjson.dumps(e.data).decode()) for e in batch])
                for e in batch:
                    row = projection(e)
                    if row is not None:
                        table, cols, vals = row
                        conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                                     f" ({', '.join('?' * len(cols))})", vals)
                n += len(batch)
    conn.close()
    return n


def figures(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{statistics.median(ms):8.1f} ms  ({min(ms):.1f}-{max(ms):.1f})"


async def run(tmp: str, events: list[Event], stores: int, days: int, rounds: int) -> None:
    if True:
        url = f"sqlite:///{tmp}/central.db"
        t0 = time.perf_counter()
        n = await fill(url, events, stores, days)
        size = await asyncio.to_thread(lambda: Path(tmp, "central.db").stat().st_size)
        print(f"database: {stores} stores x {days} days, {n:,} events "
              f"({time.perf_counter() - t0:.0f} s to fill), {size / 1e6:.0f} MB")
        db = await open_db(url)
        await queries.prepare(db)
        now = datetime(2023, 2, 16, 23, 0, tzinfo=ZoneInfo(TZ)).timestamp()
        auth = Auth([User("admin", "admin", hash_password("bench-password"))])
        dash = Dashboard(db, auth, timezones={}, default_tz=TZ, clock=lambda: now)
        try:
            async with listening(dash.app(), "127.0.0.1", free_port()) as base:
                await api_figures(base, rounds)
                await browser_figures(base, rounds)
        finally:
            await db.close()


async def api_figures(base: str, rounds: int) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(trust_env=False, cookie_jar=jar) as http:
        await http.post(base + "/login", data={"username": "admin",
                                               "password": "bench-password"})
        for path in ("/api/stores", "/api/stores/store-007/day", "/api/health",
                     "/api/campaigns"):
            samples = []
            for i in range(rounds + 1):
                t = time.perf_counter()
                async with http.get(base + path) as r:
                    await r.read()
                    assert r.status == 200, (path, r.status)
                if i:
                    samples.append(time.perf_counter() - t)
            print(f"GET {path:<28} {figures(samples)}")


async def browser_figures(base: str, rounds: int) -> None:
    from tests.browser import browser, chromium
    if chromium() is None:
        print("chromium not installed: no page-load figure")
        return
    async with browser() as page:
        await page.goto(base + "/login")
        await page.js("document.querySelector('input[name=username]').value='admin';"
                      "document.querySelector('input[name=password]').value='bench-password';"
                      "document.querySelector('form').submit()")
        await page.wait("location.pathname === '/'")
        for path in ("/", "/store/store-007"):
            samples = []
            for i in range(rounds + 1):
                t = time.perf_counter()
                await page.goto(base + path)
                await page.wait("document.body.dataset.ready === '1'", within_s=60)
                if i:
                    samples.append(time.perf_counter() - t)
            print(f"page {path:<27} {figures(samples)}  (Chromium: navigation to drawn)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stores", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if not BRNO.exists():
        print(f"{BRNO} missing (../shared): skipped", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        events = [e for m in replayed_messages(Path(tmp))
                  if isinstance(e := parse(m.topic, m.payload), Event)]
        asyncio.run(run(tmp, events, args.stores, args.days, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
