"""What a fleet's monitoring sees of one gateway: Prometheus metrics and a health verdict.

Invariants:
- Nothing here is on the observation path: every figure is read from counters the shells and
  the core already keep, at scrape time (a scrape costs microseconds per metric; an
  observation costs nothing extra).
- Metric names are prefixed `presence_gateway_`; counters end in `_total` (Prometheus text
  format via the well-kept prometheus-client, never hand-formatted).
- Health is `ok` only when every configured driver and the outbox are healthy; the body names
  each failing part with its reason, so a fleet dashboard can say what to fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from presence_gateway.drivers.base import Driver, ReportsProblem
from presence_gateway.runtime.assembly import Runtime

if TYPE_CHECKING:
    from aiohttp import web

# A driver that failed less than this long ago is unhealthy even if its supervisor has started
# it again: the longest backoff between restarts is 60 s, so a driver failing on every start
# never looks healthy between two failures.
DRIVER_GRACE_S = 90.0
# The live BLE driver's recovery ladder (drivers/ble_recovery.py): step label -> the driver's
# counter. Read by attribute, as the runtime names no concrete driver.
RECOVERY_STEPS = (("scan_restart", "scan_restarts"), ("adapter_reset", "adapter_resets"),
                  ("bluetoothd_restart", "bluetoothd_restarts"), ("skipped", "recovery_skips"))


@dataclass(slots=True)
class DriverHealth:
    """One driver as its supervisor saw it."""

    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    failed_at: float | None = None   # monotonic
    running: bool = False

    def healthy(self, now: float) -> bool:
        return self.failed_at is None or now - self.failed_at >= DRIVER_GRACE_S


@dataclass(slots=True)
class Health:
    """Driver health, owned by the service's supervisors (one writer per driver entry)."""

    drivers: dict[str, DriverHealth] = field(default_factory=dict)

    def driver(self, name: str) -> DriverHealth:
        return self.drivers.setdefault(name, DriverHealth())

    def started(self, name: str) -> None:
        d = self.driver(name)
        if d.running or d.failures:
            d.restarts += 1
        d.running = True

    def problem(self, driver: Driver, now: float) -> str | None:
        """Why `driver` is unhealthy, or None: it failed to its supervisor recently, or it
        says it is retrying on its own (before it gives up to the supervisor)."""
        if isinstance(driver, ReportsProblem) and driver.problem is not None:
            return driver.problem
        h = self.driver(driver.name)
        return None if h.healthy(now) else (h.last_error or "failing")

    def failed(self, name: str, reason: str) -> None:
        d = self.driver(name)
        d.running, d.failures, d.last_error = False, d.failures + 1, reason
        d.failed_at = time.monotonic()


@dataclass(frozen=True, slots=True)
class OutboxView:
    """What a scrape reads from the outbox (one query, done by the HTTP handler)."""

    depth: int
    dropped: int
    oldest_age_s: float


def verdict(rt: Runtime, health: Health, outbox: OutboxView) -> tuple[bool, dict[str, Any]]:
    """(healthy, JSON body) for /healthz: every configured driver and the outbox."""
    now = time.monotonic()
    problems: dict[str, str] = {}
    drivers: dict[str, Any] = {}
    for d in rt.drivers:
        h, problem = health.driver(d.name), health.problem(d, now)
        drivers[d.name] = {"ok": problem is None, "restarts": h.restarts,
                           "last_error": problem or h.last_error}
        if problem is not None:
            problems[f"driver:{d.name}"] = problem
    if rt.writer.disk_full:
        problems["outbox"] = "disk full: events are held in memory (bounded) until space returns"
    limit = rt.cfg.storage.outbox_max_rows
    if outbox.depth >= limit:
        problems["outbox"] = f"full: {outbox.depth} of {limit} rows (oldest events dropped)"
    pub = rt.publisher
    body: dict[str, Any] = {
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "drivers": drivers,
        "outbox": {"depth": outbox.depth, "dropped": outbox.dropped,
                   "oldest_age_s": round(outbox.oldest_age_s, 3)},
        # The broker is reported, not judged: the outbox exists so that a broker outage is
        # survivable, and a fleet alerts on outbox age instead.
        "mqtt": None if pub is None else {"connected": pub.connected, "connects": pub.connects,
                                          "last_error": pub.last_error},
    }
    return not problems, body


class GatewayCollector(Collector):
    """Reads the runtime's counters when Prometheus scrapes."""

    def __init__(self, rt: Runtime, health: Health) -> None:
        self.rt, self.health = rt, health
        self.outbox = OutboxView(0, 0, 0.0)

    def collect(self) -> Iterator[Metric]:
        rt, pipeline = self.rt, self.rt.core.pipeline
        p = "presence_gateway_"
        obs = CounterMetricFamily(p + "observations", "Observations fed to the core",
                                  labels=["radio", "kind"])
        for (radio, kind), n in sorted(pipeline.by_kind.items()):
            obs.add_metric([str(radio), kind], n)
        yield obs
        rejects = CounterMetricFamily(p + "parse_errors", "Frames and adverts the parsers "
                                      "refused, by reason", labels=["reason"])
        for reason, n in sorted(rt.channel.rejects.items()):
            rejects.add_metric([reason], n)
        yield rejects
        events = CounterMetricFamily(p + "events", "Events built, by type", labels=["type"])
        for etype, n in sorted(pipeline.events_by_type.items()):
            events.add_metric([etype], n)
        yield events
        yield _counter(p + "queue_drops", "Observations dropped: the queue was full",
                       rt.channel.drops)
        yield _counter(p + "throttled", "Unchanged adverts dropped by the per-device throttle",
                       rt.channel.throttle.stats.dropped)
        yield _gauge(p + "outbox_depth", "Events waiting in the outbox", self.outbox.depth)
        yield _gauge(p + "outbox_oldest_age_seconds", "Age of the oldest waiting event",
                     self.outbox.oldest_age_s)
        yield _counter(p + "outbox_dropped", "Events dropped by the outbox bounds",
                       self.outbox.dropped)
        pub = rt.publisher
        yield _gauge(p + "mqtt_connected", "1 while connected to the broker",
                     1.0 if pub is not None and pub.connected else 0.0)
        yield _counter(p + "mqtt_connects", "Successful broker connections (reconnects = n-1)",
                       pub.connects if pub is not None else 0)
        yield _counter(p + "mqtt_published", "Messages published",
                       pub.published if pub is not None else 0)
        yield _counter(p + "mqtt_acked", "Messages acknowledged by the broker",
                       pub.acked if pub is not None else 0)
        restarts = CounterMetricFamily(p + "driver_restarts", "Driver restarts after a failure",
                                       labels=["driver"])
        up = GaugeMetricFamily(p + "driver_up", "1 when the driver is healthy",
                               labels=["driver"])
        now = time.monotonic()
        for d in rt.drivers:
            restarts.add_metric([d.name], self.health.driver(d.name).restarts)
            up.add_metric([d.name], 0.0 if self.health.problem(d, now) else 1.0)
        yield restarts
        yield up
        yield recovery_metric(rt.drivers)


def recovery_metric(drivers: Iterable[Driver]) -> CounterMetricFamily:
    """Recovery steps per driver that keeps the counters (the live BLE driver); a step that
    was not permitted or not possible counts as `skipped`."""
    family = CounterMetricFamily("presence_gateway_ble_recoveries",
                                 "BLE recovery steps taken (scan restart, adapter power-cycle, "
                                 "bluetoothd restart) and skipped", labels=["driver", "step"])
    for d in drivers:
        for step, attr in RECOVERY_STEPS:
            n = getattr(d, attr, None)
            if isinstance(n, int):
                family.add_metric([d.name, step], n)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def registry_for(collector: GatewayCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


async def outbox_view(rt: Runtime) -> OutboxView:
    oldest = await rt.outbox.oldest(1)
    age = max(0.0, time.time() - oldest[0].created) if oldest else 0.0
    return OutboxView(depth=rt.outbox.size, dropped=rt.outbox.dropped, oldest_age_s=age)


async def serve_observability(rt: Runtime, health: Health) -> None:
    """/metrics and /healthz on `http.listen` until cancelled (a side task of the service).
    aiohttp is imported here, not at the top: only a gateway with `http.listen` serves, and
    the import (its client's TLS context included) was a quarter of every command's
    start-up."""
    from aiohttp import web

    from presence_gateway.adapters.http import serve

    listen = rt.cfg.http.listen
    assert listen is not None
    collector = GatewayCollector(rt, health)
    registry = registry_for(collector)

    async def metrics(request: web.Request) -> web.Response:
        collector.outbox = await outbox_view(rt)
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok, body = verdict(rt, health, await outbox_view(rt))
        return web.Response(body=orjson.dumps(body), status=200 if ok else 503,
                            content_type="application/json")

    await serve(listen[0], listen[1], {"/metrics": metrics, "/healthz": healthz})
