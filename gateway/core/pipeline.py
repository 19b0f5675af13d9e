"""feed(observation) -> messages; tick(now) -> messages. The whole core behind one door.

Invariants:
- Pure and deterministic: the same observations and the same `now` values give the same
  events (ids aside, which carry randomness), so replay in capture time is exact.
- Stages run in one fixed order: presence engine -> identity linker (adds customer ids only
  under consent) -> offer engine (only on state changes) -> envelope. Each stage is optional
  behind a small protocol so the core is testable piece by piece.
- Shell counters (queue drops, outbox depth, rejects) reach the stats event through `tick`'s
  `shell` argument; the core never reaches out for them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from gateway.core.envelope import Envelope
from gateway.core.model import Event, Observation, OutboundMessage

STATS_TYPE = "presence.gateway.stats"


class Engine(Protocol):
    def feed(self, obs: Observation) -> list[Event]: ...
    def tick(self, now: float) -> list[Event]: ...


class Linker(Protocol):
    def observe(self, obs: Observation) -> None: ...
    def decorate(self, events: list[Event]) -> list[Event]: ...


class Offers(Protocol):
    def on_events(self, events: Sequence[Event], now: float) -> list[Event]: ...


class Pipeline:
    def __init__(self, *, engine: Engine, envelope: Envelope, stats_interval_s: float = 60.0,
                 linker: Linker | None = None, offers: Offers | None = None,
                 gateway_id: str = "", started: float | None = None) -> None:
        self.engine = engine
        self.envelope = envelope
        self.linker = linker
        self.offers = offers
        self.stats_interval_s = stats_interval_s
        self.gateway_id = gateway_id
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.events_by_type: Counter[str] = Counter()
        self.observations = 0
        self._window_obs = 0
        self._next_stats: float | None = None if started is None else started + stats_interval_s
        self.last_ts: float | None = None

    # -- hot path -------------------------------------------------------------------------
    def feed(self, obs: Observation) -> list[OutboundMessage]:
        return self.feed_many((obs,))

    def feed_many(self, batch: Iterable[Observation]) -> list[OutboundMessage]:
        events: list[Event] = []
        by_kind = self.by_kind
        engine_feed = self.engine.feed
        linker = self.linker
        n = 0
        last = self.last_ts
        for obs in batch:
            n += 1
            by_kind[(obs.radio.value, obs.kind)] += 1
            if linker is not None and obs.identity is not None:
                linker.observe(obs)
            out = engine_feed(obs)
            if out:
                events.extend(out)
            last = obs.ts
        self.observations += n
        self._window_obs += n
        self.last_ts = last
        if self._next_stats is None and last is not None:
            self._next_stats = last + self.stats_interval_s
        return self._emit(events, last or 0.0)

    # -- time -----------------------------------------------------------------------------
    def tick(self, now: float, shell: Mapping[str, Any] | None = None) -> list[OutboundMessage]:
        events = self.engine.tick(now)
        msgs = self._emit(events, now)
        if self._next_stats is not None and now >= self._next_stats:
            msgs.append(self._wrap(self._stats_event(now, shell or {})))
            while self._next_stats <= now:
                self._next_stats += self.stats_interval_s
        return msgs

    def finish(self, shell: Mapping[str, Any] | None = None) -> list[OutboundMessage]:
        """End of a recording: close every open visit and emit a last stats summary."""
        if self.last_ts is None:
            return []
        horizon = self.last_ts + 10 * 86400.0
        msgs = self._emit(self.engine.tick(horizon), horizon)
        msgs.append(self._wrap(self._stats_event(self.last_ts, shell or {})))
        return msgs

    # -- internals ------------------------------------------------------------------------
    def _emit(self, events: list[Event], now: float) -> list[OutboundMessage]:
        if not events:
            return []
        if self.linker is not None:
            events = self.linker.decorate(events)
        if self.offers is not None:
            events = events + self.offers.on_events(events, now)
        return [self._wrap(e) for e in events]

    def _wrap(self, event: Event) -> OutboundMessage:
        self.events_by_type[event.type] += 1
        return self.envelope.wrap(event)

    def _stats_event(self, now: float, shell: Mapping[str, Any]) -> Event:
        by_radio: Counter[str] = Counter()
        by_kind: dict[str, int] = {}
        for (radio, kind), n in sorted(self.by_kind.items()):
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
            "outbox_depth": int(shell.get("outbox_depth", 0)),
            "outbox_dropped": int(shell.get("outbox_dropped", 0)),
            "mqtt_connected": bool(shell.get("mqtt_connected", False)),
        }
        self._window_obs = 0
        return Event(type=STATS_TYPE, time=now, data=data, subject=self.gateway_id)
