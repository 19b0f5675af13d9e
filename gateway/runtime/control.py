"""The control plane of a running gateway: what arrives other than radio frames.

- `offers.reload` commands on `{base}/commands/offers.reload` (sealed) and SIGHUP
  reload the offer rules; the result is published on `.../commands/offers.reload/result`.
- `events.resend` commands on `{base}/commands/events.resend` (sealed) put delivered events
  back in the outbox (runtime/resend.py); the result goes to `.../events.resend/result`.
- `presence.configure` commands on `{base}/commands/presence.configure` (sealed) replace the
  zones and presence settings of the running engine (validated whole; kept in the database
  so a restart keeps them); the result goes to `.../presence.configure/result`.
- Identity registry and opt-out sync from central (`{store}/identity/snapshot|updates`).
- Peer summaries between a store's gateways on `{store}/sync/{gateway}` (ephemeral, QoS 0).
- Maintenance: visit history flush, registry reload after CLI edits, retention purge, offer
  ledger persistence and pruning, the outbox's resend window and compaction (`Outbox.tidy`).

Invariants: every input is validated before it changes anything; a rejected input changes
nothing and yields a `presence.command.rejected` (or a failed result) event; handlers never
raise into the MQTT client. Everything runs on the service's loop, in the service's TaskGroup.
The core is called only synchronously (never across an await), so the consumer, the ticker
and this plane never see each other's half-done work. Times: inbound messages are judged on
the runtime's clock (wall time, or a test's); retention and caps in a replay on capture time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

from presence_gateway.adapters.config_store import RemoteConfigStore
from presence_gateway.adapters.offer_store import OfferLedgerStore
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.core.commands import CommandGuard, CommandRejected, result_event
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.events import CommandRefused, Event, InboundRejected
from presence_gateway.core.model import OutboundMessage
from presence_gateway.core.offers.reload import OFFERS_RELOAD, reload_offers, reload_request
from presence_gateway.core.offers.rules import dwell_marks
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.remote import (
    PRESENCE_CONFIGURE,
    configure_request,
    parse_presence,
)
from presence_gateway.core.ratelimit import RateLimit
from presence_gateway.core.resend import EVENTS_RESEND
from presence_gateway.errors import DiskFull
from presence_gateway.runtime.clock import Clock
from presence_gateway.runtime.core import Core
from presence_gateway.runtime.identity import IdentityRuntime
from presence_gateway.runtime.resend import resend

log = logging.getLogger("presence_gateway")
Emit = Callable[[list[OutboundMessage]], None]
MAINTENANCE_S = 10.0
PURGE_S = 3600.0


class ControlPlane:
    def __init__(self, cfg: GatewayConfig, core: Core, emit: Emit, *, identity: IdentityRuntime,
                 ledger: OfferLedgerStore, publisher: Publisher | None, clock: Clock,
                 capture_time: bool, outbox: Outbox | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        # Retention and caps run on capture time in a replay: a replay of last month must
        # neither purge what it just linked nor age out its own caps.
        self.capture_time = capture_time
        self.core = core
        self.emit = emit
        self.identity = identity
        self.ledger = ledger
        self.publisher = publisher  # None when the run does not publish
        self.outbox = outbox
        self.inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1000)
        self.guard = CommandGuard(cfg.offers.command_key, store_id=cfg.store_id,
                                  gateway_id=cfg.gateway_id,
                                  max_age_s=cfg.offers.command_max_age_s)
        self.reload_topic = f"{core.topics.commands}/{OFFERS_RELOAD}"
        self.resend_topic = f"{core.topics.commands}/{EVENTS_RESEND}"
        self.configure_topic = f"{core.topics.commands}/{PRESENCE_CONFIGURE}"
        self.sync_prefix = f"{core.topics.store}/sync/"
        self.dropped = 0
        self.rejections = RateLimit()  # rejection events + warnings per inbound topic
        # Summaries applied, per peer gateway: what a test on a manual clock waits on.
        self.peers_heard: Counter[str] = Counter()
        self._last_purge = 0.0
        self._disk_full = False

    # -- inputs ---------------------------------------------------------------------------
    def subscribe_all(self) -> None:
        if self.publisher is None:
            return
        self.publisher.subscribe(self.reload_topic, self._enqueue)
        self.publisher.subscribe(self.resend_topic, self._enqueue)
        self.publisher.subscribe(self.configure_topic, self._enqueue)
        for topic in self.identity.topics:
            self.publisher.subscribe(topic, self._enqueue)
        self.publisher.subscribe(self.sync_prefix + "+", self._on_peer, qos=0)

    def _enqueue(self, topic: str, payload: bytes) -> None:
        try:
            self.inbox.put_nowait((topic, payload))
        except asyncio.QueueFull:  # a flood of commands must not grow memory
            self.dropped += 1

    def sighup(self) -> None:
        self._enqueue("sighup", b"")

    # -- the control task -----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            topic, payload = await self.inbox.get()
            try:
                events = await self._handle(topic, payload, self.clock.now())
            except Exception:  # a bad message must never stop the control plane
                log.exception("control message on %s failed", topic)
                continue
            events = self._limit(topic, events, self.clock.now())
            if events:
                self.emit(self.core.pipeline.inject(events))

    def _limit(self, topic: str, events: list[Event], now: float) -> list[Event]:
        """Rejections (and their warnings) per source topic through a token bucket; the rest
        are counted in `rejections.suppressed` (stats) so junk cannot fill outbox or log."""
        rejected = [e for e in events if isinstance(e, (InboundRejected, CommandRefused))]
        if not rejected:
            return events
        if not self.rejections.allow(topic, now):
            return [e for e in events if e not in rejected]
        for e in rejected:
            log.warning("rejected on %s: %s", topic, e.reason)
        return events

    async def _handle(self, topic: str, payload: bytes, now: float) -> list[Event]:
        if topic == "sighup":
            return self._reload_from_file(now)
        if topic == self.reload_topic:
            return self._reload_command(payload, now)
        if topic == self.resend_topic and self.outbox is not None:
            return await resend(self.guard, self.outbox, payload, now)
        if topic == self.configure_topic:
            return await self._configure(payload, now)
        if topic in self.identity.topics:
            events: list[Event] = await self.identity.on_message(topic, payload, now)
            self.core.boundary.replace_opt_out(self.identity.opt_out)
            return events
        return []

    def _reload_from_file(self, now: float) -> list[Event]:
        path = self.cfg.offers.rules_path
        if path is None or self.core.offers is None:
            log.info("SIGHUP: no offer rules configured")
            return []
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            log.error("SIGHUP: cannot read %s: %s; the old rules keep running", path,
                      exc.strerror)
            return []
        ok, event = reload_offers(self.core.offers, text, source=path, zones=self._zones(),
                                  now=now)
        log.info("SIGHUP: offer rules %s", "reloaded" if ok else "rejected, old rules kept")
        return [event]

    def _reload_command(self, payload: bytes, now: float) -> list[Event]:
        cmd = self.guard.check(OFFERS_RELOAD, payload, now)
        if isinstance(cmd, CommandRejected):
            return [result_event(OFFERS_RELOAD, now, command_id=cmd.id, ok=False,
                                 reason=cmd.reason)]
        req = reload_request(cmd)
        if isinstance(req, CommandRejected):
            return [result_event(OFFERS_RELOAD, now, command_id=req.id, ok=False,
                                 reason=req.reason)]
        if self.core.offers is None:
            return [result_event(OFFERS_RELOAD, now, command_id=cmd.id, ok=False,
                                 reason="offers_disabled")]
        _, event = reload_offers(self.core.offers, req.rules_text, source=f"command {cmd.id}",
                                 zones=self._zones(), now=now, command_id=cmd.id,
                                 version=req.version)
        return [event]

    @property
    def presence(self) -> PresenceSettings:
        """The presence settings in force: the engine's (an accepted presence.configure
        replaces them there; the offer rules' dwell marks are merged in)."""
        return self.core.engine.s

    def _zones(self) -> set[str]:
        return {z.name for z in self.presence.zones}

    async def _configure(self, payload: bytes, now: float) -> list[Event]:
        """New zones and presence settings: all valid (and every offer rule's zone still
        there) or nothing changes; then the engine takes them and the database keeps them."""
        cmd = self.guard.check(PRESENCE_CONFIGURE, payload, now)
        req = cmd if isinstance(cmd, CommandRejected) else configure_request(cmd)
        if isinstance(req, CommandRejected):
            return [result_event(PRESENCE_CONFIGURE, now, command_id=req.id, ok=False,
                                 reason=req.reason)]
        parsed = parse_presence(req.text, f"{PRESENCE_CONFIGURE} {req.command.id}")
        rules = self.core.offers.rules if self.core.offers is not None else None
        errors = parsed if isinstance(parsed, list) else [
            f"offer rule {r.id} needs zone {r.when.zone}, which these settings remove"
            for r in (rules.rules if rules is not None else ())
            if r.when.zone is not None and r.when.zone not in {z.name for z in parsed.zones}]
        if isinstance(parsed, list) or errors:
            return [result_event(PRESENCE_CONFIGURE, now, command_id=req.command.id, ok=False,
                                 version=req.version, errors=tuple(errors))]
        settings = parsed if rules is None else dataclasses.replace(
            parsed, dwell_marks_s=dwell_marks(rules, parsed.dwell_marks_s))
        if self.outbox is not None:
            await RemoteConfigStore(self.outbox).save("presence", req.version, req.text, now)
        events = self.core.engine.reconfigure(settings, now)
        log.info("presence settings %s applied (%d zones) by command %s", req.version,
                 len(parsed.zones), req.command.id)
        return [*events, result_event(PRESENCE_CONFIGURE, now, command_id=req.command.id,
                                      ok=True, version=req.version)]

    # -- peers ----------------------------------------------------------------------------
    def _on_peer(self, topic: str, payload: bytes) -> None:
        gateway = topic[len(self.sync_prefix):]
        if gateway == self.cfg.gateway_id:
            return
        try:
            items = orjson.loads(payload)
            if not isinstance(items, list):
                raise ValueError("not a list")
            self.core.engine.apply_peer_summary(gateway, items, self.clock.now())
            self.peers_heard[gateway] += 1
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("peer summary from %s ignored: %s", gateway, exc)

    async def peers(self) -> None:
        """Publish this gateway's device summaries for the store's other gateways."""
        topic = self.sync_prefix + self.cfg.gateway_id
        interval = self.cfg.presence.summary_interval_s
        while True:
            if self.publisher is not None:
                summary = self.core.engine.peer_summary(self.clock.now())
                self.publisher.publish_now(topic, orjson.dumps(summary))
            await self.clock.sleep(interval)

    # -- maintenance ----------------------------------------------------------------------
    def retention_now(self) -> float:
        """Now for retention and caps: the last capture time in a replay (0 before the first,
        so no purge runs against a time the recording has not reached), else the clock."""
        if not self.capture_time:
            return self.clock.now()
        last = self.core.pipeline.last_ts
        return last if last is not None else 0.0

    async def maintenance(self) -> None:
        while True:
            await self.clock.sleep(MAINTENANCE_S)
            await self.tend(self.retention_now())

    async def tend(self, now: float) -> None:
        """Persist what the core accumulated and enforce retention (also at shutdown).

        A full device skips the rest of this round (logged once per episode) instead of
        failing the task: the outbox writer owns shedding, the next round tries again."""
        try:
            await self._tend(now)
        except DiskFull as exc:
            if not self._disk_full:
                log.warning("maintenance skipped: %s", exc)
            self._disk_full = True
            return
        self._disk_full = False

    async def _tend(self, now: float) -> None:
        await self.identity.flush()
        if await self.identity.reload_if_changed():
            self.core.boundary.replace_opt_out(self.identity.opt_out)
        if self.core.offers is not None:
            rows = self.core.offers.ledger_entries()
            if rows:
                await self.ledger.append(rows)
        if self.outbox is not None and self.publisher is not None:
            await self.outbox.tidy()
        if now - self._last_purge >= PURGE_S:
            self._last_purge = now
            await self._purge(now)

    async def _purge(self, now: float) -> None:
        await self.identity.purge(now, self.cfg.privacy.retention_days)
        if self.core.offers is not None:
            await self.ledger.prune(now - self.core.offers.rules.horizon_s)
