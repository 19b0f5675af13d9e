"""The dashboard's HTTP shell (aiohttp on the asyncio loop): pages, a JSON API, live updates,
CSV exports, read-only over the central database.

Invariants:
- Nobody reads anything without a session: pages redirect to /login, `/api/...` and
  `/export/...` answer 401; a role that may not see a view gets 403.
- Pages are static files (no build step, no CDN: uPlot is served from the package) that fetch
  the JSON API; a Content-Security-Policy allows scripts from this origin only.
- State-changing requests are POST only: /login (form fields `username`, `password`; its
  Origin, when sent, must be this host) and /logout (the session's CSRF token in the form).
- Times in the API are epoch seconds or RFC 3339 UTC, with the store's IANA time zone beside
  them; the pages format them in that zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from presence_gateway.central.dashboard import queries
from presence_gateway.central.dashboard.aggregate import (
    chain_row,
    day_window,
    local_day,
    store_day,
)
from presence_gateway.central.dashboard.auth import COOKIE, SESSION_S, Auth, Session
from presence_gateway.central.db import CentralDb

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_KEY = web.RequestKey("session", Session)
LIVE_POLL_S = 1.0
PAGES = {"/": ("chain.html", "stores"), "/campaigns": ("campaigns.html", "campaigns"),
         "/health": ("health.html", "health")}
STATIC = ("app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css", "login.html")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY"}


def _web(name: str) -> bytes:
    return resources.files("presence_gateway").joinpath("data", "web", name).read_bytes()


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


class Dashboard:
    def __init__(self, db: CentralDb, auth: Auth, *, timezones: Mapping[str, str],
                 default_tz: str, rules: list[str] | None = None,
                 simulations: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db, self.auth = db, auth
        self.timezones, self.default_tz = dict(timezones), default_tz
        self.rules = rules or []
        self.simulations = simulations
        self.clock = clock

    def tz(self, store: str) -> str:
        return self.timezones.get(store, self.default_tz)

    # -- app ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._guard])
        r = app.router
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        for path in PAGES:
            r.add_get(path, self.page)
        r.add_get("/store/{store}", self.page)
        r.add_get("/static/{name}", self.static)
        r.add_get("/api/me", self.me)
        r.add_get("/api/stores", self.api_stores)
        r.add_get("/api/stores/{store}/day", self.api_day)
        r.add_get("/api/stores/{store}/live", self.api_live)
        r.add_get("/api/health", self.api_health)
        r.add_get("/api/campaigns", self.api_campaigns)
        r.add_get("/export/{name}.csv", self.export)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if not resp.prepared:
            resp.headers.update(SECURITY_HEADERS)
        return resp

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in ("/login", "/logout") or path.startswith("/static/"):
            return await handler(request)
        session = self.auth.session(request.cookies.get(COOKIE), self.clock())
        if session is None:
            if path.startswith(("/api/", "/export/")):
                return _json({"error": "log in first"}, 401)
            raise web.HTTPSeeOther("/login")
        request[SESSION_KEY] = session
        return await handler(request)

    # -- login ----------------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.Response:
        return web.Response(body=_web("login.html"), content_type="text/html")

    async def login(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            return _json({"error": "cross-site login refused"}, 403)
        form = await request.post()
        client = request.remote or "?"
        session = self.auth.login(client, str(form.get("username", "")),
                                  str(form.get("password", "")), self.clock())
        if session is None:
            why = "busy" if self.auth.throttled(client, self.clock()) else "failed"
            raise web.HTTPSeeOther(f"/login?{why}=1")
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, self.auth.cookie(session, self.clock()), max_age=int(SESSION_S),
                        httponly=True, samesite="Strict", secure=self.auth.secure_cookies,
                        path="/")
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        session = self.auth.session(request.cookies.get(COOKIE), self.clock())
        form = await request.post()
        if session is not None and form.get("csrf") != session.csrf:
            return _json({"error": "bad CSRF token"}, 403)
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    # -- pages ----------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        name, need = PAGES.get(request.path, ("store.html", "stores"))
        if not request[SESSION_KEY].may(need):
            return web.Response(status=403, text="your role may not see this page")
        return web.Response(body=_web(name), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        kind = {"js": "application/javascript", "css": "text/css",
                "html": "text/html"}[name.rsplit(".", 1)[1]]
        return web.Response(body=_web(name), content_type=kind,
                            headers={"Cache-Control": "max-age=3600"})

    # -- API ------------------------------------------------------------------------------
    async def me(self, request: web.Request) -> web.Response:
        s = request[SESSION_KEY]
        return _json({"user": s.user, "role": s.role, "csrf": s.csrf,
                      "may": [w for w in ("stores", "campaigns", "health") if s.may(w)]})

    async def chain(self) -> list[dict[str, Any]]:
        out = []
        health = await queries.health(self.db)
        for store in await queries.stores(self.db):
            tz = self.tz(store)
            today = local_day(self.clock(), tz)
            day = store_day(await queries.day_rows(self.db, store, today, tz), tz)
            last = await queries.same_weekday_last_week(self.db, store, today, tz)
            row = chain_row(store, day, last, [g for g in health if g["store"] == store])
            out.append({**row, "date": today.isoformat(), "timezone": tz})
        return out

    async def api_stores(self, request: web.Request) -> web.Response:
        return _json(await self.chain())

    def _day(self, request: web.Request, store: str) -> date:
        text = request.query.get("date")
        if text:
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise web.HTTPBadRequest(text="date: expected YYYY-MM-DD") from None
        return local_day(self.clock(), self.tz(store))

    async def api_day(self, request: web.Request) -> web.Response:
        store = request.match_info["store"]
        day, tz = self._day(request, store), self.tz(store)
        body = store_day(await queries.day_rows(self.db, store, day, tz), tz)
        return _json({"store": store, "date": day.isoformat(), **body})

    async def api_live(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each new footfall interval of today, as it is stored."""
        store = request.match_info["store"]
        tz = self.tz(store)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        _, end = day_window(local_day(self.clock(), tz), tz)
        last = request.query.get("after") or day_window(local_day(self.clock(), tz), tz)[0]
        # The page was closed or navigated away: the normal end of a live view.
        with contextlib.suppress(ConnectionResetError):
            await self._stream(resp, store, last, end)
        return resp

    async def _stream(self, resp: web.StreamResponse, store: str, last: str, end: str) -> None:
        while True:
            rows = await self.db.fetch(
                "SELECT f.time, f.present, f.entries, f.exits, f.passers_by, e.data FROM footfall"
                " f JOIN events e ON e.id = f.event_id WHERE f.store = ? AND f.time > ? AND"
                " f.time < ? ORDER BY f.time", store, last, end)
            for t, present, entries, exits, passers, raw in rows:
                last = str(t)
                interval = orjson.loads(raw).get("present_interval")
                data = orjson.dumps({"time": last, "present_people_est": present,
                                     "present_interval": interval, "entries": entries,
                                     "exits": exits, "passers_by": passers})
                await resp.write(b"event: footfall\ndata: " + data + b"\n\n")
            if not rows:
                await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(LIVE_POLL_S)

    async def api_health(self, request: web.Request) -> web.Response:
        if not request[SESSION_KEY].may("health"):
            return _json({"error": "your role may not see fleet health"}, 403)
        return _json(await queries.health(self.db))

    async def campaigns(self, days: int) -> dict[str, Any]:
        end_day = local_day(self.clock(), self.default_tz)
        start, _ = day_window(date.fromordinal(end_day.toordinal() - days + 1), self.default_tz)
        _, end = day_window(end_day, self.default_tz)
        fired = await queries.offers_by_rule(self.db, None, start, end)
        names = sorted(set(self.rules) | set(fired))
        sims = await asyncio.to_thread(read_simulations, self.simulations)
        return {"days": days, "rules": [{"offer_id": n, "fired": fired.get(n, 0),
                                         "configured": n in self.rules} for n in names],
                "simulations": sims}

    async def api_campaigns(self, request: web.Request) -> web.Response:
        if not request[SESSION_KEY].may("campaigns"):
            return _json({"error": "your role may not see campaigns"}, 403)
        try:
            days = max(1, min(90, int(request.query.get("days", "7"))))
        except ValueError:
            days = 7
        return _json(await self.campaigns(days))

    # -- CSV --------------------------------------------------------------------------------
    async def export(self, request: web.Request) -> web.Response:
        name, s = request.match_info["name"], request[SESSION_KEY]
        rows: Sequence[Mapping[str, Any]]
        if name == "stores":
            rows = await self.chain()
        elif name == "health" and s.may("health"):
            rows = await queries.health(self.db)
        elif name == "campaigns" and s.may("campaigns"):
            rows = (await self.campaigns(int(request.query.get("days", "7"))))["rules"]
        elif name in ("hours", "dwell") and "store" in request.query:
            store = request.query["store"]
            day = store_day(await queries.day_rows(self.db, store, self._day(request, store),
                                                   self.tz(store)), self.tz(store))
            if name == "hours":
                rows = [{"hour": h, **{k: v[h] for k, v in day["per_hour"].items()}}
                        for h in range(24)]
            else:
                rows = day["dwell_histogram"]
        else:
            raise web.HTTPNotFound()
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return web.Response(text=buf.getvalue(), content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"'})


def read_simulations(folder: str | None) -> list[dict[str, Any]]:
    """The `offers simulate --report` files in `folder`, newest day first; unreadable ones are
    skipped (a half-written file must not break the page)."""
    if folder is None:
        return []
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            body = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(body, dict) and isinstance(body.get("rules"), list):
            out.append({k: body.get(k) for k in ("store", "day", "timezone", "rules_version",
                                                 "captures", "visits", "visits_linked",
                                                 "rules")} | {"file": path.name})
    return sorted(out, key=lambda b: str(b.get("day") or ""), reverse=True)
