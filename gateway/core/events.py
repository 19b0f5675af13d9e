"""The core's event vocabulary: one typed class per CloudEvents type, shared by every domain.

Invariants:
- `EventType` is the only place an event type is spelled; domains compare classes
  (`isinstance(ev, ZoneEntered)`), never strings.
- Events are frozen, slotted values. The wire dict (CloudEvents `data`) is made by `payload()`,
  which only the envelope calls; nothing in the core builds or reads event dicts.
- Visit-scoped events carry `customer_id` only when the identity linker set it under consent
  (`with_customer`); `payload()` omits it otherwise, so an unlinked visit never shows the key.
- Retained state events (`OccupancyChanged`) name their state topic with `topic_suffix`;
  command results name theirs (`commands/{name}/result`).
- `anonymous` is True only for events that name no customer and are not retained state or a
  command's answer: the outbox drops those first when the disk budget runs out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class EventType(StrEnum):
    VISIT_STARTED = "presence.visit.started"
    VISIT_ENDED = "presence.visit.ended"
    ZONE_ENTERED = "presence.zone.entered"
    ZONE_EXITED = "presence.zone.exited"
    ZONE_DWELL = "presence.zone.dwell"
    FOOTFALL = "presence.footfall"
    OCCUPANCY = "presence.occupancy"
    GATEWAY_STATS = "presence.gateway.stats"
    IDENTITY_LINKED = "presence.identity.linked"
    OFFER_TRIGGERED = "presence.offer.triggered"
    COMMAND_RESULT = "presence.command.result"
    COMMAND_REJECTED = "presence.command.rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every core event: its time (capture time in a replay) and wire shape."""

    type: ClassVar[EventType]
    retained: ClassVar[bool] = False
    time: float

    @property
    def subject(self) -> str | None:
        return None

    @property
    def topic_suffix(self) -> str | None:
        return None

    @property
    def anonymous(self) -> bool:
        """Names no customer and is not retained state: the first to go on a full disk."""
        return not self.retained

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def data(self) -> Mapping[str, Any]:
        """The CloudEvents `data` (for tools and tests; the envelope calls `payload`)."""
        return self.payload()


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitEvent(Event):
    """An event about one visit of one unit (a device or a group of random addresses)."""

    visit_id: str
    device: str

    @property
    def subject(self) -> str | None:
        return self.visit_id

    @property
    def customer(self) -> str | None:
        return None

    @property
    def anonymous(self) -> bool:
        return self.customer is None

    def with_customer(self, customer_id: str) -> VisitEvent:
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class _Linkable(VisitEvent):
    customer_id: str | None = None

    @property
    def customer(self) -> str | None:
        return self.customer_id

    def with_customer(self, customer_id: str) -> VisitEvent:
        return dataclasses.replace(self, customer_id=customer_id)

    def _base(self) -> dict[str, Any]:
        d: dict[str, Any] = {"visit_id": self.visit_id, "device": self.device}
        if self.customer_id is not None:
            d["customer_id"] = self.customer_id
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitStarted(_Linkable):
    type: ClassVar[EventType] = EventType.VISIT_STARTED
    radio: str
    first_seen: float
    observations: int
    rssi: float

    def payload(self) -> dict[str, Any]:
        d = self._base()
        d.update(radio=self.radio, first_seen=self.first_seen, observations=self.observations,
                 rssi=self.rssi)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitEnded(_Linkable):
    type: ClassVar[EventType] = EventType.VISIT_ENDED
    radio: str
    first_seen: float
    last_seen: float
    duration_s: float
    observations: int
    zones: tuple[str, ...]
    dwell_s: float
    classification: str
    reason: str
    max_rssi: float

    def payload(self) -> dict[str, Any]:
        d = self._base()
        d.update(radio=self.radio, first_seen=self.first_seen, last_seen=self.last_seen,
                 duration_s=self.duration_s, observations=self.observations,
                 zones=list(self.zones), dwell_s=self.dwell_s,
                 classification=self.classification, reason=self.reason,
                 max_rssi=self.max_rssi)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneEvent(_Linkable):
    zone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneEntered(ZoneEvent):
    type: ClassVar[EventType] = EventType.ZONE_ENTERED
    rssi: float
    distance_m: float
    proximity: str

    def payload(self) -> dict[str, Any]:
        d = self._base()
        d.update(zone=self.zone, rssi=self.rssi, distance_m=self.distance_m,
                 proximity=self.proximity)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneExited(ZoneEvent):
    type: ClassVar[EventType] = EventType.ZONE_EXITED
    dwell_s: float

    def payload(self) -> dict[str, Any]:
        d = self._base()
        d.update(zone=self.zone, dwell_s=self.dwell_s)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneDwell(ZoneEvent):
    """A confirmed dwell mark: a sighting proved the unit still in the zone `dwell_s` after
    it entered."""

    type: ClassVar[EventType] = EventType.ZONE_DWELL
    dwell_s: float

    def payload(self) -> dict[str, Any]:
        d = self._base()
        d.update(zone=self.zone, dwell_s=self.dwell_s)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityLinked(VisitEvent):
    """A consented customer was recognised in a visit (`device` is the unit key)."""

    type: ClassVar[EventType] = EventType.IDENTITY_LINKED
    customer_id: str
    method: str

    @property
    def customer(self) -> str | None:
        return self.customer_id

    def payload(self) -> dict[str, Any]:
        return {"visit_id": self.visit_id, "customer_id": self.customer_id,
                "method": self.method}


@dataclass(frozen=True, slots=True, kw_only=True)
class FootfallCounted(Event):
    """The per-interval people count of a store (see presence.footfall for the fields)."""

    type: ClassVar[EventType] = EventType.FOOTFALL
    store: str
    counts: Mapping[str, Any]

    @property
    def subject(self) -> str | None:
        return self.store

    @property
    def present(self) -> float:
        return float(self.counts["present"])

    def payload(self) -> dict[str, Any]:
        return dict(self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class OccupancyChanged(Event):
    """Retained occupancy state of a store (`occupancy`) or a zone (`occupancy/<zone>`)."""

    type: ClassVar[EventType] = EventType.OCCUPANCY
    retained: ClassVar[bool] = True
    store: str
    state_topic: str
    state: Mapping[str, Any]

    @property
    def subject(self) -> str | None:
        return self.store

    @property
    def topic_suffix(self) -> str | None:
        return self.state_topic

    def payload(self) -> dict[str, Any]:
        return dict(self.state)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayStats(Event):
    type: ClassVar[EventType] = EventType.GATEWAY_STATS
    gateway: str
    counts: Mapping[str, Any]

    @property
    def subject(self) -> str | None:
        return self.gateway

    def payload(self) -> dict[str, Any]:
        return dict(self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferTriggered(Event):
    type: ClassVar[EventType] = EventType.OFFER_TRIGGERED
    offer_id: str
    customer_id: str
    visit_id: str
    zone: str
    store_id: str
    rules_version: str
    reason: Mapping[str, Any]
    offer_payload: Mapping[str, Any]

    @property
    def subject(self) -> str | None:
        return self.offer_id

    @property
    def anonymous(self) -> bool:
        return False

    def payload(self) -> dict[str, Any]:
        return {"offer_id": self.offer_id, "customer_id": self.customer_id,
                "visit_id": self.visit_id, "zone": self.zone, "store_id": self.store_id,
                "rules_version": self.rules_version, "reason": dict(self.reason),
                "payload": dict(self.offer_payload)}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome(Event):
    """What a command came to, published beside it on `commands/{name}/result`."""

    command: str
    command_id: str | None
    ok: bool
    version: str = ""
    rules: int = 0
    errors: tuple[str, ...] = ()
    reason: str = ""

    @property
    def subject(self) -> str | None:
        return self.command_id

    @property
    def anonymous(self) -> bool:
        return False  # an answer someone waits for

    @property
    def topic_suffix(self) -> str | None:
        return f"commands/{self.command}/result"

    def payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {"command": self.command, "id": self.command_id, "ok": self.ok,
                             "time": self.time}
        if self.version:
            d["version"] = self.version
        if self.ok:
            d["rules"] = self.rules
        if self.errors:
            d["errors"] = list(self.errors)
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult(CommandOutcome):
    """The command was tried: `ok`, or refused with the reasons in `errors`."""

    type: ClassVar[EventType] = EventType.COMMAND_RESULT


@dataclass(frozen=True, slots=True, kw_only=True)
class ResendResult(CommandResult):
    """`events.resend` carried out: how many held events were re-queued, how many of the range
    were still waiting anyway, and which sequence numbers the gateway no longer holds."""

    from_sequence: int | None
    to_sequence: int | None
    requeued: int
    waiting: int
    missing: tuple[tuple[int, int], ...]
    oldest_held: int | None

    def payload(self) -> dict[str, Any]:
        return {"command": self.command, "id": self.command_id, "ok": self.ok,
                "time": self.time, "from_sequence": self.from_sequence,
                "to_sequence": self.to_sequence, "requeued": self.requeued,
                "waiting": self.waiting, "missing": [list(r) for r in self.missing],
                "missing_count": sum(hi - lo + 1 for lo, hi in self.missing),
                "oldest_held_sequence": self.oldest_held}


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRefused(CommandOutcome):
    """The guard refused the command (`reason`: bad signature, stale, replay, ...)."""

    type: ClassVar[EventType] = EventType.COMMAND_REJECTED


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRejected(Event):
    """An inbound sync message (identity snapshot/update) refused; nothing was changed."""

    type: ClassVar[EventType] = EventType.COMMAND_REJECTED
    command: str
    reason: str
    detail: str
    version: int | None
    topic: str

    @property
    def subject(self) -> str | None:
        return self.command

    @property
    def anonymous(self) -> bool:
        return False  # an answer someone waits for

    def payload(self) -> dict[str, Any]:
        return {"command": self.command, "reason": self.reason, "detail": self.detail,
                "version": self.version, "topic": self.topic}
