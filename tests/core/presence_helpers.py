"""Scripted traces for the presence engine tests: observations with known truth."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from presence_gateway.core.events import Event
from presence_gateway.core.model import AddressKind, Kind, Observation, Radio
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine


def placed(gateway_id: str = "gw-1", **kw: Any) -> PresenceSettings:
    """Settings for a gateway whose Wi-Fi placement is known (a walk test's offset of 0 dB),
    so a scripted trace of one or two phones is judged at the reference scale from its first
    reading; a sensor not learnt yet is cautious (core/presence/placement.py `unsure`),
    which tests/core/test_presence_placement.py covers."""
    kw.setdefault("rssi_offsets", ((gateway_id, 0.0),))
    return PresenceSettings(**kw)


def wifi(ts: float, device: str, rssi: int | None = -60, sensor: str = "") -> Observation:
    return Observation(ts=ts, radio=Radio.WIFI, device=device, address_kind=AddressKind.PUBLIC,
                       rssi=rssi, channel=6, kind=Kind.PROBE_REQUEST.value, sensor=sensor)


def ble(ts: float, device: str, rssi: int = -60, kind: str = Kind.APPLE.value,
        sensor: str = "", fields: dict[str, Any] | None = None) -> Observation:
    return Observation(ts=ts, radio=Radio.BLE, device=device, address_kind=AddressKind.STATIC,
                       rssi=rssi, channel=37, kind=kind, fields=fields or {}, sensor=sensor)


def run(engine: PresenceEngine, trace: Iterable[Observation], *, tick_every: float = 1.0,
        until: float | None = None) -> list[Event]:
    """Feed a time-ordered trace, ticking every `tick_every` seconds of capture time."""
    events: list[Event] = []
    next_tick: float | None = None
    last = 0.0
    for obs in trace:
        while next_tick is not None and next_tick <= obs.ts:
            events += engine.tick(next_tick)
            next_tick += tick_every
        if next_tick is None:
            next_tick = obs.ts + tick_every
        events += engine.feed(obs)
        last = obs.ts
    end = until if until is not None else last + 3600.0
    while next_tick is not None and next_tick <= end:
        events += engine.tick(next_tick)
        next_tick += tick_every
    return events


def visit_events(events: Iterable[Event]) -> list[tuple[str, float, str | None]]:
    """(type suffix, time, zone) of the visit/zone events, footfall and occupancy left out."""
    out = []
    for e in events:
        if e.type.startswith(("presence.visit.", "presence.zone.")):
            out.append((e.type.removeprefix("presence."), round(e.time, 3), e.data.get("zone")))
    return out
