"""The composition root: the one place a running gateway is built, for every mode.

`open_runtime(cfg, options)` opens the gateway's SQLite file, starts the identity registry and
the offer ledger on it, builds the pure core around what they loaded (boundary with resolver
and opt-out list, presence engine, linker, offers, envelope, pipeline), then the channel with
its advert throttle, the outbox writer, the publisher (only when publishing) and the control
plane. `run`, `replay`, `demo`, `offers simulate`, `doctor` and the benchmarks all come here,
so they cannot drift apart: a replay computes the same events with or without a broker, and a
simulation is a replay that publishes nothing, on a copy of the database.

Invariants:
- Everything is built once, in dependency order, and handed over by constructor: no component
  is patched after construction.
- A run that does not publish still opens a database, a scratch copy of the configured one
  (or an empty one when that file does not exist), so identity, opt-out and caps work
  exactly as when publishing and the live file is never written. `Mode.SIMULATE` runs are
  handed a scratch database by runtime/simulate.py and use it as is.
- `Mode` decides the clock: LIVE reads `options.clock`; REPLAY and SIMULATE use capture time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from presence_gateway.adapters.config_store import RemoteConfigStore
from presence_gateway.adapters.offer_store import OfferLedgerStore
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.outbox_budget import Budget
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.adapters.scratch import copy_database
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.driver_config import WifiMonitorSettings, default_ble
from presence_gateway.core.model import OutboundMessage
from presence_gateway.core.offers.rules import EMPTY_RULES, RuleSet, parse_rules
from presence_gateway.core.presence.hopping import ChannelPlan
from presence_gateway.core.presence.remote import parse_presence
from presence_gateway.core.throttle import AdvertThrottle
from presence_gateway.drivers.base import Driver
from presence_gateway.errors import ConfigError
from presence_gateway.runtime.channel import ObservationChannel
from presence_gateway.runtime.clock import WALL, Clock
from presence_gateway.runtime.control import ControlPlane
from presence_gateway.runtime.core import Core, build_core, pseudonymizer_for
from presence_gateway.runtime.identity import IdentityRuntime
from presence_gateway.runtime.status import StatusReport
from presence_gateway.runtime.writer import OutboxWriter, Taps

log = logging.getLogger("presence_gateway")


class Mode(StrEnum):
    LIVE = "live"          # radios, wall clock, ticker, peers, signals
    REPLAY = "replay"      # recordings in capture time
    SIMULATE = "simulate"  # a replay that never publishes (offers simulate)

    @property
    def capture_time(self) -> bool:
        return self is not Mode.LIVE


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    mode: Mode = Mode.LIVE
    publish: bool = True
    events_out: IO[bytes] | None = None
    observations_out: IO[bytes] | None = None
    on_message: Callable[[OutboundMessage], None] | None = None
    flush_timeout_s: float = 30.0
    clock: Clock = field(default=WALL)


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a running gateway is made of, built by `open_runtime`."""

    cfg: GatewayConfig
    options: RunOptions
    outbox: Outbox
    identity: IdentityRuntime
    ledger: OfferLedgerStore
    rules: RuleSet
    core: Core
    channel: ObservationChannel
    writer: OutboxWriter
    publisher: Publisher | None
    control: ControlPlane
    drivers: Sequence[Driver]
    status: StatusReport


def load_rules(path: str, cfg: GatewayConfig | None) -> RuleSet:
    """Read and validate a rules file; zones are checked against `cfg` when given."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", None, f"cannot read file: {exc}") from None
    zones = {z.name for z in cfg.presence.zones} if cfg is not None else None
    return parse_rules(text, path, zones=zones)


def channel_plan(cfg: GatewayConfig, mode: Mode) -> ChannelPlan | None:
    """The Wi-Fi channel plan the presence engine corrects for (core/presence/hopping.py):
    a live run's wifi_monitor radio says it; a recording (or `channels: all`, or several
    radios with different plans) gives None and the engine learns it from the frames."""
    if mode is not Mode.LIVE:
        return None
    plans = {ChannelPlan(d.channels, d.dwell_s) for d in cfg.drivers
             if isinstance(d, WifiMonitorSettings) and d.channels is not None}
    return plans.pop() if len(plans) == 1 else None


def drivers_for(cfg: GatewayConfig, mode: Mode) -> list[Driver]:
    """The configured drivers (live without a `drivers` section: BLE on hci0)."""
    from presence_gateway.drivers.registry import create
    settings = cfg.drivers or ((default_ble(),) if mode is Mode.LIVE else ())
    return [create(d) for d in settings]


@contextlib.asynccontextmanager
async def open_runtime(cfg: GatewayConfig, options: RunOptions,
                       drivers: Sequence[Driver] | None = None) -> AsyncIterator[Runtime]:
    """Build the running gateway for `cfg` (drivers from the config unless given)."""
    rules = load_rules(cfg.offers.rules_path, cfg) if cfg.offers.rules_path else EMPTY_RULES
    if drivers is None:
        drivers = drivers_for(cfg, options.mode)
    if options.mode.capture_time and len(drivers) > 1:  # recordings interleave by capture time
        from presence_gateway.runtime.replay_merge import MergedReplay
        drivers = [MergedReplay(drivers)]
    async with contextlib.AsyncExitStack() as stack:
        path = cfg.storage.path
        if not options.publish and options.mode is not Mode.SIMULATE:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="presence-gateway-"))
            path = _scratch(cfg.storage.path, str(Path(tmp) / "gateway.db"))
        st = cfg.storage
        outbox = await stack.enter_async_context(await Outbox.open(
            path, max_rows=st.outbox_max_rows, max_age_s=st.outbox_max_age_s,
            budget=Budget(max_bytes=st.max_bytes, min_free_bytes=st.min_free_bytes,
                          keep_delivered_s=st.keep_delivered_s,
                          keep_delivered_bytes=st.keep_delivered_bytes)))
        yield await _assemble(cfg, options, outbox, rules, list(drivers))


async def _remote_presence(cfg: GatewayConfig, outbox: Outbox) -> GatewayConfig:
    """The presence settings central sent last (presence.configure) win over the file's: a
    restart must not undo them. A stored text that no longer validates is reported and the
    file's settings are used."""
    stored = await RemoteConfigStore(outbox).load("presence")
    if stored is None:
        return cfg
    version, text = stored
    parsed = parse_presence(text, f"stored presence.configure {version}")
    if isinstance(parsed, list):
        log.warning("stored presence settings %s no longer valid (%s); using the file's",
                    version, "; ".join(parsed))
        return cfg
    log.info("presence settings %s (from central) replace the file's", version)
    return dataclasses.replace(cfg, presence=parsed)


def _scratch(source: str, target: str) -> str:
    """A run that does not publish computes on a copy: it must not write the live file."""
    if Path(source).exists():
        copy_database(source, target)
        log.info("not publishing: this run reads a copy of %s and changes nothing", source)
    else:
        log.info("no database at %s: this run uses an empty temporary one", source)
    return target


async def _assemble(cfg: GatewayConfig, options: RunOptions, outbox: Outbox, rules: RuleSet,
                    drivers: list[Driver]) -> Runtime:
    clock = options.clock
    live = options.mode is Mode.LIVE
    pseudonymizer = pseudonymizer_for(cfg)
    identity = await IdentityRuntime.start(outbox, pseudonymizer, cfg.identity,
                                           prefix=cfg.mqtt.topic_prefix, store=cfg.store_id)
    ledger = OfferLedgerStore(outbox)
    await ledger.init()
    cfg = await _remote_presence(cfg, outbox)
    core = build_core(cfg, identity, pseudonymizer, rules=rules,
                      next_seq=(await outbox.last_seq()) + 1,
                      started=clock.now() if live else None,
                      plan=channel_plan(cfg, options.mode))
    if core.offers is not None:
        # A replay's capture time is unknown yet: load every stored row (the table holds at
        # most the rules' horizon); the engine's windows ignore older ones. A simulation starts
        # with no caps used (its database is a copy whose ledger was emptied).
        since = clock.now() - rules.horizon_s if live else 0.0
        core.offers.load_ledger(await ledger.load(since))
    channel = ObservationChannel(core.boundary, cfg.queue_max,
                                 AdvertThrottle(cfg.ble_repeat_interval_s,
                                                wifi_interval_s=cfg.wifi_repeat_interval_s))
    writer = OutboxWriter(outbox if options.publish else None,
                          batch_max=cfg.storage.batch_max,
                          interval=cfg.storage.batch_interval_s,
                          taps=Taps(options.events_out, options.on_message))
    status = StatusReport(cfg, [d.name for d in drivers], started=clock.now())
    publisher = None
    if options.publish:
        publisher = Publisher(cfg.mqtt, outbox, status_topic=core.topics.status,
                              online_payload=lambda: status.payload("online"),
                              offline_payload=status.will(), stop_payload=status.stopped,
                              logger=log)
    control = ControlPlane(cfg, core, writer.add, identity=identity, ledger=ledger,
                           publisher=publisher, clock=clock, capture_time=not live,
                           outbox=outbox)
    return Runtime(cfg, options, outbox, identity, ledger, rules, core, channel, writer,
                   publisher, control, drivers, status)
