"""The service shell: one TaskGroup wiring drivers -> channel -> pipeline -> outbox -> MQTT.

Invariants:
- One TaskGroup: a supervised task per driver, the consumer, the ticker (live only), the
  publisher. No stray tasks, no threads beyond aiosqlite's worker.
- Every message goes to the SQLite outbox (one transaction per batch) before it is published;
  the publisher deletes it only on PUBACK.
- Stop (SIGINT/SIGTERM, or the end of a replay): drivers stop, the queue drains, pending
  messages are committed, the outbox is flushed to the broker within a grace period, the status
  goes offline. What could not be delivered stays in the outbox for the next start.
- Replay runs in capture time: the pipeline's clock is the observations' timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from presence_gateway import __version__
from presence_gateway.adapters.sdnotify import Notifier
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.envelope import Topics
from presence_gateway.core.model import Observation, OutboundMessage
from presence_gateway.core.offers.rules import EMPTY_RULES, RuleSet
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.privacy import Boundary
from presence_gateway.core.throttle import AdvertThrottle
from presence_gateway.drivers.base import Driver
from presence_gateway.errors import DriverError, GatewayError
from presence_gateway.runtime.assembly import assemble, pseudonymizer_for
from presence_gateway.runtime.channel import ObservationChannel
from presence_gateway.runtime.control import ControlPlane

log = logging.getLogger("presence_gateway")


@dataclass(slots=True)
class RunOptions:
    replay: bool = False
    mqtt: bool = True
    events_out: IO[bytes] | None = None
    observations_out: IO[bytes] | None = None
    flush_timeout_s: float = 30.0
    on_message: Callable[[OutboundMessage], None] | None = None


@dataclass(slots=True)
class RunSummary:
    observations: int = 0
    events: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    queue_drops: int = 0
    published: int = 0
    acked: int = 0
    outbox_depth: int = 0
    driver_errors: list[str] = field(default_factory=list)


class _Writer:
    """Batches messages into the outbox (and optional JSONL files) at most once per interval."""

    def __init__(self, outbox: Any, opts: RunOptions, batch_max: int, interval: float) -> None:
        self.outbox = outbox
        self.opts = opts
        self.batch_max = batch_max
        self.interval = interval
        self.pending: list[OutboundMessage] = []
        self.last_flush = time.monotonic()

    def add(self, msgs: Sequence[OutboundMessage]) -> None:
        self.pending.extend(msgs)
        out, cb = self.opts.events_out, self.opts.on_message
        if out is not None or cb is not None:
            for m in msgs:
                if out is not None:
                    out.write(orjson.dumps({"topic": m.topic})[:-1] + b"," + m.payload[1:] + b"\n")
                if cb is not None:
                    cb(m)

    def due(self) -> bool:
        return len(self.pending) >= self.batch_max or (
            bool(self.pending) and time.monotonic() - self.last_flush >= self.interval)

    async def flush(self) -> None:
        if self.pending and self.outbox is not None:
            await self.outbox.append(self.pending)
        self.pending = []
        self.last_flush = time.monotonic()


class Service:
    def __init__(self, cfg: GatewayConfig, drivers: Sequence[Driver], opts: RunOptions) -> None:
        self.cfg = cfg
        self.opts = opts
        if opts.replay and len(drivers) > 1:  # recordings interleave by capture time
            from presence_gateway.runtime.replay_merge import MergedReplay
            drivers = [MergedReplay(drivers)]
        self.drivers = list(drivers)
        self.started = time.time()
        # One pseudonymizer for the run: run() builds the core's boundary around it.
        self.pseudonymizer = pseudonymizer_for(cfg)
        self.boundary = Boundary(self.pseudonymizer)
        self.channel = ObservationChannel(self.boundary, cfg.queue_max,
                                          AdvertThrottle(cfg.ble_repeat_interval_s))
        self.topics = Topics(cfg.mqtt.topic_prefix, cfg.store_id, cfg.gateway_id)
        self.summary = RunSummary()
        self.stop_event = asyncio.Event()
        self.outbox: Any = None
        self.publisher: Any = None
        self.control: Any = None
        self.notifier = Notifier()

    # -- status payloads --------------------------------------------------------------------
    def _status(self, state: str) -> bytes:
        return orjson.dumps({
            "state": state, "store": self.cfg.store_id, "gateway": self.cfg.gateway_id,
            "version": __version__, "started": self.started,
            "drivers": [d.name for d in self.drivers], "time": time.time(),
        })

    def shell_stats(self) -> dict[str, Any]:
        pub = self.publisher
        return {
            "rejects": dict(self.channel.rejects), "queue_drops": self.channel.drops,
            "opted_out": self.boundary.stats.opted_out,
            "throttled": self.channel.throttle.stats.dropped,
            "outbox_depth": getattr(self, "_depth", 0),
            "outbox_dropped": getattr(self.outbox, "dropped", 0),
            "mqtt_rejected": int(getattr(pub, "rejected", 0)),
            "mqtt_connected": bool(pub is not None and pub.connected),
        }

    # -- run --------------------------------------------------------------------------------
    async def run(self) -> RunSummary:
        cfg, opts = self.cfg, self.opts
        rules = _load_rules(cfg)
        outbox_cm: Any = contextlib.nullcontext(None)
        if opts.mqtt:
            from presence_gateway.adapters.outbox import Outbox
            outbox_cm = await Outbox.open(cfg.storage.path, max_rows=cfg.storage.outbox_max_rows,
                                          max_age_s=cfg.storage.outbox_max_age_s)
        async with outbox_cm as outbox:
            self.outbox = outbox
            identity = ledger = None
            pseudo = self.pseudonymizer
            core_kw: dict[str, Any] = {}
            if outbox is not None:
                from presence_gateway.adapters.offer_store import OfferLedgerStore
                from presence_gateway.runtime.identity import IdentityRuntime
                identity = await IdentityRuntime.start(
                    outbox, pseudo, cfg.identity, prefix=cfg.mqtt.topic_prefix,
                    store=cfg.store_id)
                core_kw = {"index": identity.index, "linker": identity.linker,
                           "opt_out": identity.opt_out,
                           "next_seq": (await outbox.last_seq()) + 1}
                ledger = OfferLedgerStore(outbox)
                await ledger.init()
            core = assemble(cfg, pseudonymizer=pseudo, rules=rules,
                            started=None if opts.replay else time.time(), **core_kw)
            if identity is not None:
                identity.boundary = core.boundary
            if ledger is not None and core.offers is not None:
                # A replay's capture time is unknown yet: load every stored row (the table
                # holds at most the rules' horizon); the engine's windows ignore older ones.
                since = 0.0 if opts.replay else time.time() - rules.horizon_s
                core.offers.load_ledger(await ledger.load(since))
            self.boundary = core.boundary
            self.channel.boundary = core.boundary
            writer = _Writer(outbox, opts, cfg.storage.batch_max, cfg.storage.batch_interval_s)
            if outbox is not None:
                from presence_gateway.adapters.publisher import Publisher
                self.publisher = Publisher(cfg.mqtt, outbox, status_topic=self.topics.status,
                                           online_payload=lambda: self._status("online"),
                                           offline_payload=self._status("offline"), logger=log)
            self.control = ControlPlane(cfg, core, writer.add, identity=identity, ledger=ledger,
                                        publisher=self.publisher,
                                        clock=_capture_clock(core.pipeline) if opts.replay
                                        else time.time)
            self.control.subscribe_all()
            await self._task_group(core.pipeline, writer)
            await self.control.tend(self.control.clock())
            self._fill_summary(core.pipeline)
            if outbox is not None:
                self.summary.outbox_depth = await outbox.depth()
        return self.summary

    async def _task_group(self, pipeline: Pipeline, writer: _Writer) -> None:
        async with asyncio.TaskGroup() as tg:
            pub_task = (tg.create_task(self.publisher.run(), name="publisher")
                        if self.publisher is not None else None)
            driver_tasks = [tg.create_task(self._supervise(d), name=f"driver:{d.name}")
                            for d in self.drivers]
            consumer = tg.create_task(self._consume(pipeline, writer), name="consumer")
            side = [tg.create_task(self.control.run(), name="control"),
                    tg.create_task(self.control.maintenance(), name="maintenance")]
            if not self.opts.replay:
                side.append(tg.create_task(self._ticker(pipeline, writer), name="ticker"))
                side.append(tg.create_task(self.control.peers(), name="peers"))
                _on_signal(signal.SIGHUP, self.control.sighup)
                self.notifier.ready(f"{len(self.drivers)} driver(s), store {self.cfg.store_id}")
            all_done: asyncio.Future[Any] = asyncio.gather(*driver_tasks, return_exceptions=True)
            stop: asyncio.Future[Any] = tg.create_task(self.stop_event.wait(), name="stop")
            await asyncio.wait([all_done, stop], return_when=asyncio.FIRST_COMPLETED)
            self.notifier.stopping()
            for t in driver_tasks:
                t.cancel()
            await asyncio.gather(*driver_tasks, return_exceptions=True)
            stop.cancel()
            for t in side:
                t.cancel()
            self.channel.close()
            await consumer
            writer.add(pipeline.finish(self.shell_stats()) if self.opts.replay else [])
            await writer.flush()
            if pub_task is not None:
                await self._drain_publisher()
                pub_task.cancel()

    async def _drain_publisher(self) -> None:
        ok = await self.publisher.flush(self.opts.flush_timeout_s)
        if not ok:
            log.warning("broker unreachable: %d messages stay in the outbox for the next start",
                        await self.outbox.depth())

    async def _supervise(self, driver: Driver) -> None:
        """Run a driver; restart a failed live driver with backoff, never crash the rest."""
        delay = 1.0
        while True:
            try:
                await driver.run(self.channel)
                if self.opts.replay:
                    return
                delay = 1.0
            except DriverError as exc:
                log.error("%s", exc)
                self.summary.driver_errors.append(str(exc))
                if self.opts.replay:
                    return
            except Exception as exc:  # a driver bug must not take the gateway down
                log.exception("driver %s failed: %s", driver.name, exc)
                self.summary.driver_errors.append(f"driver {driver.name}: {exc!r}")
                if self.opts.replay:
                    return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 60.0)

    async def _consume(self, pipeline: Pipeline, writer: _Writer) -> None:
        obs_out = self.opts.observations_out
        while True:
            if writer.pending:  # never leave messages uncommitted while input is quiet
                try:
                    batch = await asyncio.wait_for(self.channel.get_batch(), writer.interval)
                except TimeoutError:
                    await writer.flush()
                    continue
            else:
                batch = await self.channel.get_batch()
            if not batch:
                break
            pipeline.shell = self.shell_stats()
            writer.add(pipeline.feed_many(batch, capture_clock=self.opts.replay))
            if obs_out is not None:
                obs_out.write(b"".join(_obs_line(o) for o in batch))
            if writer.due():
                await writer.flush()
                await self._refresh_depth()

    async def _ticker(self, pipeline: Pipeline, writer: _Writer) -> None:
        while True:
            await asyncio.sleep(1.0)
            # The watchdog is fed by the loop's own clock: a wedged loop stops feeding it and
            # systemd restarts the gateway (WatchdogSec in the unit).
            self.notifier.watchdog()
            await self._refresh_depth()
            writer.add(pipeline.tick(time.time(), self.shell_stats()))
            if writer.pending:
                await writer.flush()

    async def _refresh_depth(self) -> None:
        if self.outbox is not None:
            self._depth = await self.outbox.depth()

    def _fill_summary(self, pipeline: Pipeline) -> None:
        s = self.summary
        s.observations = pipeline.observations
        s.events_by_type = dict(sorted(pipeline.events_by_type.items()))
        s.events = sum(s.events_by_type.values())
        s.rejects = dict(self.channel.rejects)
        s.queue_drops = self.channel.drops
        if self.publisher is not None:
            s.published, s.acked = self.publisher.published, self.publisher.acked


def _load_rules(cfg: GatewayConfig) -> RuleSet:
    if cfg.offers.rules_path is None:
        return EMPTY_RULES
    from presence_gateway.runtime.assembly import load_rules
    return load_rules(cfg.offers.rules_path, cfg)


def _capture_clock(pipeline: Pipeline) -> Callable[[], float]:
    """Replay time: the last capture timestamp fed; 0 before the first one, so no purge runs
    against a time the recording has not reached (tend purges only once now >= 1 h)."""
    def now() -> float:
        return pipeline.last_ts if pipeline.last_ts is not None else 0.0
    return now


def _on_signal(sig: signal.Signals, fn: Callable[[], None]) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(sig, fn)


def _obs_line(o: Observation) -> bytes:
    return orjson.dumps({
        "ts": o.ts, "radio": o.radio.value, "kind": o.kind, "device": o.device,
        "address_kind": o.address_kind.value, "rssi": o.rssi, "channel": o.channel,
        "seq": o.seq, "sensor": o.sensor or None, "identity": o.identity is not None,
        "fields": dict(o.fields),
    }, option=orjson.OPT_NON_STR_KEYS) + b"\n"


async def run_with_signals(service: Service,
                           body: Callable[[], Awaitable[RunSummary]] | None = None) -> RunSummary:
    """Run until done, stopping cleanly on SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, service.stop_event.set)
    try:
        return await (body() if body is not None else service.run())
    except* GatewayError as eg:
        raise eg.exceptions[0] from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
