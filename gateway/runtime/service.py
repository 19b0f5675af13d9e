"""The service: one TaskGroup running what `open_runtime` built, for every mode.

Invariants:
- One TaskGroup: the outbox writer, the publisher, a supervised task per driver, the consumer,
  the control plane and maintenance, and live only the ticker and peer summaries. No stray
  tasks, no threads beyond aiosqlite's worker.
- Every message goes to the outbox writer (the one task that commits) before it is published;
  the publisher deletes it only on PUBACK.
- Side tasks are guarded: a bug in one is logged, counted and the task restarted; it never
  ends the run or skips the final flush.
- Stop (SIGINT/SIGTERM, or the end of a replay): drivers stop, the queue drains, a replay's
  open visits are closed, ledger and visit history are stored, the writer commits the rest,
  the outbox is flushed to the broker within a grace period, the status goes offline. What
  could not be delivered stays in the outbox for the next start.
- The core is called only synchronously, from the consumer, the ticker and the control plane:
  none of them holds it across an await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from presence_gateway.adapters.sdnotify import Notifier
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.model import Observation
from presence_gateway.drivers.base import Driver
from presence_gateway.errors import DriverError, GatewayError
from presence_gateway.runtime import continuity
from presence_gateway.runtime.assembly import Mode, RunOptions, Runtime, open_runtime
from presence_gateway.runtime.discovery import announce
from presence_gateway.runtime.observe import Health, serve_observability

log = logging.getLogger("presence_gateway")
TICK_S = 1.0
STATUS_S = 5.0  # how often `systemctl status` gets a fresh STATUS= line


@dataclass(slots=True)
class RunSummary:
    observations: int = 0
    events: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    queue_drops: int = 0
    throttled: int = 0              # repeats dropped before the boundary (core/throttle.py)
    published: int = 0
    acked: int = 0
    outbox_depth: int = 0
    delivered: bool = True          # False: publishing, and messages stayed in the outbox
    driver_errors: list[str] = field(default_factory=list)
    task_errors: list[str] = field(default_factory=list)
    # each hopping Wi-Fi sensor's plan as counted (core/presence/hopping.py `describe`)
    wifi_plans: dict[str, dict[str, object]] = field(default_factory=dict)
    # each Wi-Fi sensor's RSSI offset as counted (core/presence/placement.py `describe`)
    wifi_placement: dict[str, dict[str, object]] = field(default_factory=dict)


class Service:
    """Runs a gateway until its recordings end or it is stopped (`stop_event`)."""

    def __init__(self, cfg: GatewayConfig, options: RunOptions,
                 drivers: Sequence[Driver] | None = None) -> None:
        self.cfg = cfg
        self.options = options
        self._drivers = drivers
        self.stop_event = asyncio.Event()
        self.summary = RunSummary()
        self.notifier = Notifier()
        self.runtime: Runtime | None = None  # while running: what open_runtime built
        self.health = Health()  # each driver's entry is written by its own supervisor only

    async def run(self) -> RunSummary:
        async with open_runtime(self.cfg, self.options, self._drivers) as rt:
            self.runtime = rt
            await self._guard_once("continuity", continuity.restore(rt))
            rt.control.subscribe_all()
            await self._run(rt)
            self._fill_summary(rt)
        return self.summary

    # -- the task group ---------------------------------------------------------------------
    async def _run(self, rt: Runtime) -> None:
        live = self.options.mode is Mode.LIVE
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(rt.writer.run(), name="writer")
            pub = (tg.create_task(rt.publisher.run(), name="publisher")
                   if rt.publisher is not None else None)
            drivers = [tg.create_task(self._supervise(rt, d), name=f"driver:{d.name}")
                       for d in rt.drivers]
            consumer = tg.create_task(self._consume(rt), name="consumer")
            side = [tg.create_task(self._guard("control", rt.control.run)),
                    tg.create_task(self._guard("maintenance", rt.control.maintenance))]
            if live:
                side.append(tg.create_task(self._guard("ticker", lambda: self._ticker(rt))))
                side.append(tg.create_task(self._guard("peers", rt.control.peers)))
                side.append(tg.create_task(self._guard("discovery", lambda: announce(rt))))
                side.append(tg.create_task(self._guard("snapshots",
                                                       lambda: self._snapshots(rt))))
                if self.cfg.http.listen is not None:
                    side.append(tg.create_task(self._guard(
                        "http", lambda: serve_observability(rt, self.health))))
                self.notifier.ready(f"{len(rt.drivers)} driver(s), store {self.cfg.store_id}")
            stop = tg.create_task(self.stop_event.wait(), name="stop")
            all_done: asyncio.Future[Any] = asyncio.gather(*drivers, return_exceptions=True)
            with _signal(signal.SIGHUP, rt.control.sighup, enabled=live):
                await asyncio.wait([all_done, stop], return_when=asyncio.FIRST_COMPLETED)
            self.notifier.stopping()
            for t in (*drivers, stop, *side):
                t.cancel()
            await asyncio.gather(*drivers, *side, return_exceptions=True)
            rt.channel.close()
            await consumer
            # Asked to stop (a signal, live always): the day's state is frozen for the next
            # start. A recording that reached its end closes its visits instead.
            interrupted = self.stop_event.is_set()
            if self.options.mode.capture_time and not interrupted:
                # Every visit still open ends here: batch by batch, each waiting for room.
                for part in rt.core.pipeline.finish_batches(self._shell(rt)):
                    rt.writer.add(part)
                    await rt.writer.room()
            if interrupted:
                await self._guard_once("snapshot", continuity.save(rt, self._now(rt)))
            await self._guard_once("tend", rt.control.tend(rt.control.retention_now()))
            rt.writer.close()
            await writer
            if pub is not None:
                await self._drain_publisher(rt)
                pub.cancel()

    async def _drain_publisher(self, rt: Runtime) -> None:
        """Flush the outbox and say what happened from the publisher's own record: a broker
        is "unreachable" only when no connection to it succeeded in this run."""
        pub = rt.publisher
        assert pub is not None
        flushed = await pub.flush(self.options.flush_timeout_s)
        left = 0 if flushed else await rt.outbox.depth()  # acks may land after the timeout
        where, delivered = f"{pub.server.host}:{pub.server.port}", pub.acked - pub.rejected
        if left == 0:
            log.info("delivered %d messages to %s; the outbox is empty", delivered, where)
            return
        self.summary.delivered = False
        stay = f"{left} messages stay in the outbox for the next start"
        if pub.connected:
            log.warning("%s did not acknowledge %d messages within %.0f s (%d delivered): they"
                        " stay in the outbox for the next start", where, left,
                        self.options.flush_timeout_s, delivered)
        elif pub.connects == 0:
            log.warning("broker %s unreachable (%s): %s", where,
                        pub.last_error or "not connected yet", stay)
        else:
            log.warning("connection to %s lost (%s) after %d messages were delivered: %s",
                        where, pub.last_error or "closed", delivered, stay)

    async def _supervise(self, rt: Runtime, driver: Driver) -> None:
        """Run a driver; restart a failed live driver with backoff, never crash the rest."""
        replay = self.options.mode.capture_time
        delay = 1.0
        while True:
            self.health.started(driver.name)
            try:
                await driver.run(rt.channel)
                if replay:
                    return
                delay = 1.0
            except DriverError as exc:
                log.error("%s", exc)
                self.summary.driver_errors.append(str(exc))
                self.health.failed(driver.name, str(exc).removeprefix(f"driver {exc.driver}: "))
                if replay:
                    return
            except Exception as exc:  # a driver bug must not take the gateway down
                log.exception("driver %s failed: %s", driver.name, exc)
                self.summary.driver_errors.append(f"driver {driver.name}: {exc!r}")
                self.health.failed(driver.name, f"internal error: {exc!r}")
                if replay:
                    return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 60.0)

    async def _guard(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a side task for the whole run; a bug is logged and the task restarted."""
        delay = 1.0
        while True:
            try:
                await body()
                return
            except Exception as exc:
                log.exception("task %s failed: %s; restarting it", name, exc)
                self.summary.task_errors.append(f"{name}: {exc!r}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _guard_once(self, name: str, step: Awaitable[object]) -> None:
        try:
            await step
        except GatewayError:
            raise
        except Exception as exc:
            log.exception("%s failed: %s", name, exc)
            self.summary.task_errors.append(f"{name}: {exc!r}")

    # -- the consumer and the ticker (the only callers of feed and tick) -------------------
    async def _consume(self, rt: Runtime) -> None:
        obs_out = self.options.observations_out
        capture = self.options.mode.capture_time
        pipeline, writer = rt.core.pipeline, rt.writer
        while True:
            batch = await rt.channel.get_batch()
            if not batch:
                return
            pipeline.shell = self._shell(rt)
            try:
                # More than one part only when a tick had a backlog (a mass visit end): each
                # is committed before the next is built, so memory stays bounded.
                for part in pipeline.feed_batches(batch, capture_clock=capture):
                    writer.add(part)
                    await writer.room()
            except Exception as exc:  # a core bug must not stop the radios: log, count, go on
                log.exception("the core failed on a batch of %d observations", len(batch))
                self.summary.task_errors.append(f"consumer: {exc!r}")
            if obs_out is not None:
                obs_out.write(b"".join(_obs_line(o) for o in batch))
            await writer.room()

    async def _snapshots(self, rt: Runtime) -> None:
        clock = self.options.clock
        while True:
            await clock.sleep(continuity.SNAPSHOT_S)
            await continuity.save(rt, clock.now())

    def _now(self, rt: Runtime) -> float:
        """The runtime's time: wall (or a test's) clock live, the capture's in a replay."""
        if self.options.mode.capture_time:
            last = rt.core.pipeline.last_ts
            return last if last is not None else 0.0
        return self.options.clock.now()

    async def _ticker(self, rt: Runtime) -> None:
        clock = self.options.clock
        last_status, last_obs = clock.now(), rt.core.pipeline.observations
        while True:
            await clock.sleep(TICK_S)
            # The watchdog is fed by the loop's own clock: a wedged loop stops feeding it and
            # systemd restarts the gateway (WatchdogSec in the unit).
            self.notifier.watchdog()
            now = clock.now()
            for part in rt.core.pipeline.tick_batches(now, self._shell(rt)):
                rt.writer.add(part)
                await rt.writer.room()
            if self.notifier.enabled and now - last_status >= STATUS_S:
                obs = rt.core.pipeline.observations
                self.notifier.status(_status_line(rt, (obs - last_obs) / (now - last_status)))
                last_status, last_obs = now, obs

    @staticmethod
    def _shell(rt: Runtime) -> dict[str, Any]:
        """Counters of the shells for the stats event (the core never reaches out for them)."""
        pub = rt.publisher
        return {
            "rejects": dict(rt.channel.rejects), "queue_drops": rt.channel.drops,
            "opted_out": rt.core.boundary.stats.opted_out,
            "throttled": rt.channel.throttle.stats.dropped,
            "outbox_depth": rt.outbox.size, "outbox_dropped": rt.outbox.dropped,
            # Disk budget: waiting events dropped from the file and from the writer's memory,
            # identified ones among them, delivered ones dropped before their resend window.
            "outbox_shed": rt.outbox.shed.waiting + rt.writer.dropped,
            "outbox_shed_identified": rt.outbox.shed.identified,
            "outbox_delivered_dropped": rt.outbox.shed.delivered,
            "disk_full": rt.outbox.disk_full or rt.writer.disk_full,
            "mqtt_rejected": pub.rejected if pub is not None else 0,
            "mqtt_connected": pub is not None and pub.connected,
            "inbound_suppressed": sum(rt.control.rejections.suppressed.values()),
        }

    def _fill_summary(self, rt: Runtime) -> None:
        s, pipeline = self.summary, rt.core.pipeline
        s.observations = pipeline.observations
        s.events_by_type = dict(sorted(pipeline.events_by_type.items()))
        s.events = sum(s.events_by_type.values())
        s.rejects = dict(rt.channel.rejects)
        s.queue_drops = rt.channel.drops
        s.throttled = rt.channel.throttle.stats.dropped
        s.outbox_depth = rt.outbox.size if rt.publisher is not None else 0
        if rt.publisher is not None:
            s.published, s.acked = rt.publisher.published, rt.publisher.acked
        s.wifi_plans = rt.core.engine.wifi_plans
        s.wifi_placement = rt.core.engine.wifi_placement


@contextlib.contextmanager
def _signal(sig: signal.Signals, fn: Callable[[], None], *, enabled: bool = True
            ) -> Iterator[None]:
    """A loop signal handler for the duration of the block; after it (even on error) the
    handler is removed and the one before it restored. asyncio's remove_signal_handler alone
    resets to SIG_DFL: under `nohup` (SIGHUP ignored) a hang-up during the final flush, or
    after the gateway returns to an embedding program, would then kill the process."""
    loop = asyncio.get_running_loop()
    added = False
    if enabled:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, fn)
            added = True
    try:
        yield
    finally:
        if added:
            loop.remove_signal_handler(sig)
            if previous is not None:  # None: set outside Python; SIG_DFL is all we can do
                signal.signal(sig, previous)


def _status_line(rt: Runtime, rate: float) -> str:
    """One line for `systemctl status`: what an installer checks first."""
    pub = rt.publisher
    broker = ("no broker" if pub is None else "broker connected" if pub.connected
              else f"broker down ({pub.last_error or 'connecting'})")
    return (f"{rate:.0f} obs/s, {rt.core.engine.tracked} devices, outbox {rt.outbox.size},"
            f" {broker}")


def _obs_line(o: Observation) -> bytes:
    return orjson.dumps({
        "ts": o.ts, "radio": o.radio.value, "kind": o.kind, "device": o.device,
        "address_kind": o.address_kind.value, "rssi": o.rssi, "channel": o.channel,
        "seq": o.seq, "sensor": o.sensor or None, "identity": o.identity is not None,
        "fields": dict(o.fields),
    }, option=orjson.OPT_NON_STR_KEYS) + b"\n"


async def run_with_signals(service: Service) -> RunSummary:
    """Run until done, stopping cleanly on SIGINT/SIGTERM."""
    with _signal(signal.SIGINT, service.stop_event.set), \
            _signal(signal.SIGTERM, service.stop_event.set):
        try:
            return await service.run()
        except* GatewayError as eg:
            raise eg.exceptions[0] from None
