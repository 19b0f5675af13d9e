"""What the dashboard shows, computed from stored events: pure functions over plain rows.

Invariants:
- Input: (type, time RFC 3339, data) rows of one store and one local day, as the central
  database holds them; output: plain dicts for the JSON API, every number named after what it
  counts (`people_est` is the engine's people estimate from devices, `visits` are devices that
  walked in, `passers_by` devices that did not).
- Days and hours are the store's own (its IANA time zone), not UTC: a shop's Tuesday.
- Duplicates never reach here (the central database keeps one row per event id).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DWELL_BINS_MIN = (0, 1, 2, 5, 10, 20, 30, 60)  # histogram edges in minutes; last is open


@dataclass(frozen=True, slots=True)
class Row:
    type: str
    time: str          # RFC 3339, UTC ("...Z")
    data: Mapping[str, Any]


def day_window(day: date, tz: str) -> tuple[str, str]:
    """[start, end) of a local day as RFC 3339 UTC strings (they sort like the times)."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = start + timedelta(days=1)
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    return (start.astimezone(ZoneInfo("UTC")).strftime(fmt),
            end.astimezone(ZoneInfo("UTC")).strftime(fmt))


def local_day(now: float, tz: str) -> date:
    return datetime.fromtimestamp(now, ZoneInfo(tz)).date()


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def store_day(rows: Iterable[Row], tz: str) -> dict[str, Any]:
    """Everything the store view draws for one day."""
    zone = ZoneInfo(tz)
    present: list[tuple[float, float]] = []
    interval: list[float] | None = None  # the last footfall's 80 % interval for `present`
    zones: dict[str, list[tuple[float, float]]] = {}
    hours = {k: [0] * 24 for k in ("entries", "exits", "passers_by")}
    dwell: list[float] = []
    classes: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    linked: set[str] = set()
    offers: Counter[str] = Counter()
    for r in sorted(rows, key=lambda r: r.time):
        d = r.data
        if r.type == "presence.footfall":
            t = _epoch(r.time)
            present.append((t, _num(d.get("present"))))
            iv = d.get("present_interval")
            interval = ([_num(iv[0]), _num(iv[1])] if isinstance(iv, list) and len(iv) == 2
                        else None)
            hour = datetime.fromtimestamp(t, zone).hour
            for k in hours:
                hours[k][hour] += int(_num(d.get(k)))
            zd = d.get("zones")
            if isinstance(zd, dict):
                for name, z in zd.items():
                    if isinstance(z, dict):
                        zones.setdefault(str(name), []).append((t, _num(z.get("present"))))
        elif r.type == "presence.visit.ended":
            cls = str(d.get("classification") or "unknown")
            classes[cls] += 1
            if cls == "visitor":  # walked in (the engine's classes: visitor/passer_by/fixture)
                dwell.append(_num(d.get("duration_s")))
                path = [str(z) for z in d.get("zones") or () if isinstance(z, str)]
                for a, b in itertools.pairwise(path):
                    paths[f"{a} → {b}"] += 1
        elif r.type == "presence.identity.linked":
            linked.add(str(d.get("visit_id")))
        elif r.type == "presence.offer.triggered":
            offers[str(d.get("offer_id"))] += 1
    entries, passers = sum(hours["entries"]), sum(hours["passers_by"])
    return {
        "timezone": tz,
        "present_people_est": [[t, p] for t, p in present],
        "zones_people_est": {z: [[t, p] for t, p in pts] for z, pts in sorted(zones.items())},
        "per_hour": hours,
        "totals": {
            "visits": entries, "exits": sum(hours["exits"]), "passers_by": passers,
            "capture_rate": round(entries / (entries + passers), 3) if entries + passers
            else None,
            "median_dwell_s": round(statistics.median(dwell), 1) if dwell else None,
            "identified_visits": len(linked), "offers_fired": sum(offers.values()),
            "present_now_people_est": present[-1][1] if present else 0.0,
            "present_now_interval": interval,
        },
        "visits_by_class": dict(classes),
        "dwell_histogram": dwell_histogram(dwell),
        "paths": dict(paths.most_common(20)),
        "offers": dict(offers.most_common()),
    }


def dwell_histogram(durations_s: Iterable[float]) -> list[dict[str, Any]]:
    """Walk-in visits by dwell, in the bins of DWELL_BINS_MIN (minutes)."""
    counts = [0] * len(DWELL_BINS_MIN)
    for s in durations_s:
        m = s / 60.0
        i = max(i for i, edge in enumerate(DWELL_BINS_MIN) if m >= edge)
        counts[i] += 1
    out = []
    for i, edge in enumerate(DWELL_BINS_MIN):
        top = DWELL_BINS_MIN[i + 1] if i + 1 < len(DWELL_BINS_MIN) else None
        out.append({"label": f"{edge}-{top} min" if top is not None else f"{edge}+ min",
                    "visits": counts[i]})
    return out


def chain_row(store: str, today: Mapping[str, Any], last_week_visits: int | None,
              health: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One line of the chain view: a store's day against the same weekday last week."""
    t = today["totals"]
    change = None
    if last_week_visits:
        change = round((t["visits"] - last_week_visits) / last_week_visits, 3)
    online = sum(1 for g in health if g.get("status") == "online")
    return {"store": store, "visits_today": t["visits"],
            "visits_same_weekday_last_week": last_week_visits,
            "change_vs_last_week": change,
            "present_now": t["present_now_people_est"], "capture_rate": t["capture_rate"],
            "median_dwell_s": t["median_dwell_s"], "identified_visits": t["identified_visits"],
            "offers_fired": t["offers_fired"],
            "gateways_online": online, "gateways": len(health)}
