"""feed(observation) -> messages; tick(now) -> messages. The whole core behind one door.

Invariants:
- Pure and deterministic: the same observations and the same `now` values give the same
  events (ids aside, which carry randomness), so replay in capture time is exact.
- Stages run in one fixed order: presence engine -> identity linker (adds customer ids only
  under consent) -> offer engine (only on state changes) -> visit gate (what is published of
  the visits: `events.visits`) -> envelope. Each stage is optional
  behind a small protocol so the core is testable piece by piece.
- Bounded: the engine ends at most a batch of visits per `tick` (`backlog` says more are
  due); the `*_batches` forms hand over one batch of messages at a time so a shell can commit
  it before the next is built (a mass visit end never holds all its messages at once). The
  list forms (`feed_many`, `tick`, `finish`) are the same batches joined.
- Shell counters (queue drops, outbox depth, rejects) reach the stats event through `tick`'s
  `shell` argument; the core never reaches out for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from presence_gateway.core.envelope import Envelope
from presence_gateway.core.events import Event, GatewayStats
from presence_gateway.core.model import Observation, OutboundMessage


class Engine(Protocol):
    def feed(self, obs: Observation) -> list[Event]: ...
    def tick(self, now: float) -> list[Event]: ...

    @property
    def backlog(self) -> bool:
        """The last `tick` stopped at its batch bound: more is due at the same `now`."""
        ...

    @property
    def quiet_horizon_s(self) -> float:
        """How long after the last sighting every visit has ended and been counted."""
        ...

    @property
    def wifi_plans(self) -> dict[str, dict[str, object]]:
        """Each hopping Wi-Fi sensor's channel plan as counted (empty: no radio hops)."""
        ...

    @property
    def wifi_placement(self) -> dict[str, dict[str, object]]:
        """Each Wi-Fi sensor's RSSI offset and where it comes from (learnt, configured,
        still learning and whether it counts cautiously meanwhile)."""
        ...


class Linker(Protocol):
    def observe(self, obs: Observation) -> None: ...
    def decorate(self, events: Sequence[Event]) -> list[Event]: ...


class Offers(Protocol):
    def on_events(self, events: Sequence[Event], now: float) -> list[Event]: ...


class Gate(Protocol):
    """What is published of the events (core/visit_gate.py); offers see them all first."""

    def __call__(self, events: Iterable[Event]) -> list[Event]: ...


class Pipeline:
    def __init__(self, *, engine: Engine, envelope: Envelope, stats_interval_s: float = 60.0,
                 linker: Linker | None = None, offers: Offers | None = None,
                 gateway_id: str = "", started: float | None = None,
                 tick_interval_s: float = 1.0, gate: Gate | None = None) -> None:
        self.engine = engine
        self.envelope = envelope
        self.linker = linker
        self.offers = offers
        self.gate = gate
        self.stats_interval_s = stats_interval_s
        self.gateway_id = gateway_id
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.events_by_type: Counter[str] = Counter()
        self.observations = 0
        self._window_obs = 0
        self._next_stats: float | None = None if started is None else started + stats_interval_s
        self.tick_interval_s = tick_interval_s
        self._next_tick = float("-inf")
        self.last_ts: float | None = None
        self.max_ts = float("-inf")
        self.shell: Mapping[str, Any] = {}

    # -- continuity (core/continuity.py) --------------------------------------------------
    @property
    def next_stats(self) -> float | None:
        return self._next_stats

    @property
    def next_tick(self) -> float:
        return self._next_tick

    def resume_clock(self, *, last_ts: float | None, max_ts: float | None,
                     next_stats: float | None, next_tick: float | None) -> None:
        """Continue a frozen pipeline's clock: a replay's end and the stats cadence carry on
        from where the previous gateway stopped."""
        self.last_ts = last_ts
        self.max_ts = max_ts if max_ts is not None else float("-inf")
        if next_stats is not None:
            self._next_stats = next_stats
        self._next_tick = next_tick if next_tick is not None else float("-inf")

    # -- hot path -------------------------------------------------------------------------
    def feed(self, obs: Observation) -> list[OutboundMessage]:
        return self.feed_many((obs,))

    def feed_many(self, batch: Iterable[Observation], *,
                  capture_clock: bool = False) -> list[OutboundMessage]:
        return [m for part in self.feed_batches(batch, capture_clock=capture_clock)
                for m in part]

    def feed_batches(self, batch: Iterable[Observation], *,
                     capture_clock: bool = False) -> Iterator[list[OutboundMessage]]:
        """Feed observations in order. With `capture_clock` (replay) the observations'
        timestamps drive time: the engine is ticked whenever capture time passes the next tick,
        so results do not depend on how the input was batched. One list of messages, or
        several when a tick had a backlog (a mass visit end in the capture)."""
        events: list[Event] = []
        by_kind = self.by_kind
        engine_feed = self.engine.feed
        linker = self.linker
        n = 0
        last = self.last_ts
        for obs in batch:
            if capture_clock and obs.ts >= self._next_tick:
                self.observations += n  # the stats event must count what came before it
                self._window_obs += n
                n = 0
                events.extend(self._tick(obs.ts))  # a plain call: most ticks find nothing
                while self.engine.backlog:  # hand over what is built, batch by batch
                    self.last_ts = last
                    yield self._emit(events, last or 0.0)
                    events = self._more(obs.ts)
            n += 1
            by_kind[(obs.radio, obs.kind)] += 1  # Radio is a StrEnum: no .value lookup
            if linker is not None and obs.identity is not None:
                linker.observe(obs)
            out = engine_feed(obs)
            if out:
                events.extend(out)
            last = obs.ts
            if last > self.max_ts:
                self.max_ts = last
        self.observations += n
        self._window_obs += n
        self.last_ts = last
        yield self._emit(events, last or 0.0)

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float, shell: Mapping[str, Any] | None = None) -> list[OutboundMessage]:
        """Live clock: called about once a second with wall time."""
        return [m for part in self.tick_batches(now, shell) for m in part]

    def tick_batches(self, now: float, shell: Mapping[str, Any] | None = None
                     ) -> Iterator[list[OutboundMessage]]:
        if shell is not None:
            self.shell = shell
        for events in self._clock(now):
            yield self._emit(events, now)

    def finish(self, shell: Mapping[str, Any] | None = None) -> list[OutboundMessage]:
        return [m for part in self.finish_batches(shell) for m in part]

    def finish_batches(self, shell: Mapping[str, Any] | None = None
                       ) -> Iterator[list[OutboundMessage]]:
        """End of a recording: run the clock on as a live gateway would after the last sighting
        (the latest capture time, not the last fed), until every visit has ended, then emit a
        last stats summary. Footfall goes on minute by minute to that time, as it would live;
        nothing is dated later, so the day's totals are the recording's."""
        if shell is not None:
            self.shell = shell
        if self.last_ts is None:
            return
        end = self.max_ts + self.engine.quiet_horizon_s
        events = self.engine.tick(end)
        while self.engine.backlog:
            yield self._emit(events, end)
            events = self.engine.tick(end)
        events.append(self._stats_event(end))
        yield self._emit(events, end)

    def _clock(self, now: float) -> Iterator[list[Event]]:
        """The engine's tick at `now` until no backlog is left, then the stats event."""
        events = self._tick(now)
        while self.engine.backlog:
            yield events
            events = self._more(now)
        yield events

    def _tick(self, now: float) -> list[Event]:
        """The engine's tick at `now`: its events, and the stats event when no backlog is
        left (else `_more` until none is)."""
        self._next_tick = now + self.tick_interval_s
        return self._more(now)

    def _more(self, now: float) -> list[Event]:
        """The (next) batch of the tick at `now`; the stats event comes with the last."""
        events = self.engine.tick(now)
        if not self.engine.backlog:
            self._stats_due(now, events)
        return events

    def _stats_due(self, now: float, events: list[Event]) -> None:
        if self._next_stats is None:
            self._next_stats = now + self.stats_interval_s
        elif now >= self._next_stats:
            events.append(self._stats_event(now))
            # Re-anchor rather than step: a clock jump (NTP after a boot without RTC, a gap in
            # a capture) must not cost one loop turn per missed interval.
            self._next_stats = now + self.stats_interval_s

    # -- internals ------------------------------------------------------------------------
    def _emit(self, events: list[Event], now: float) -> list[OutboundMessage]:
        # The linker runs even without new events: a link found mid-visit emits
        # presence.identity.linked on its own.
        if self.linker is not None:
            events = self.linker.decorate(events)
        if not events:
            return []
        offers = self.offers.on_events(events, now) if self.offers is not None else None
        if self.gate is not None:
            events = self.gate(events)
        if offers:
            events = events + offers
        return self.inject(events)

    def inject(self, events: Sequence[Event]) -> list[OutboundMessage]:
        """Wrap events that did not come from observations (command results, sync
        rejections) with the same envelope and sequence."""
        self.events_by_type.update(e.type.value for e in events)
        return [self.envelope.wrap(e) for e in events]

    def _stats_event(self, now: float) -> Event:
        shell = self.shell
        by_radio: Counter[str] = Counter()
        by_kind: dict[str, int] = {}
        for (member, kind), n in sorted(self.by_kind.items()):
            radio = str(member)  # a plain str for the event's JSON keys
            by_radio[radio] += n
            by_kind[f"{radio}:{kind}"] = n
        data: dict[str, Any] = {
            "gateway": self.gateway_id,
            "observations": self.observations,
            "observations_in_interval": self._window_obs,
            "interval_s": self.stats_interval_s,
            "by_radio": dict(by_radio),
            "by_kind": by_kind,
            "events": dict(sorted(self.events_by_type.items())),
            "rejects": dict(shell.get("rejects", {})),
            "queue_drops": int(shell.get("queue_drops", 0)),
            "opted_out": int(shell.get("opted_out", 0)),
            "throttled": int(shell.get("throttled", 0)),
            "outbox_depth": int(shell.get("outbox_depth", 0)),
            "outbox_dropped": int(shell.get("outbox_dropped", 0)),
            "outbox_shed": int(shell.get("outbox_shed", 0)),
            "outbox_shed_identified": int(shell.get("outbox_shed_identified", 0)),
            "outbox_delivered_dropped": int(shell.get("outbox_delivered_dropped", 0)),
            "disk_full": bool(shell.get("disk_full", False)),
            "mqtt_rejected": int(shell.get("mqtt_rejected", 0)),
            "mqtt_connected": bool(shell.get("mqtt_connected", False)),
            "inbound_suppressed": int(shell.get("inbound_suppressed", 0)),
        }
        plans = self.engine.wifi_plans
        if plans:  # hopping radios only: what their plan was read as (dwell learnt or given)
            data["wifi_plans"] = plans
        placement = self.engine.wifi_placement
        if placement:  # Wi-Fi sensors only; `cautious` tells IT the count is still careful
            data["wifi_placement"] = placement
        self._window_obs = 0
        return GatewayStats(time=now, gateway=self.gateway_id, counts=data)
