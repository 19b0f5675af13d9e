"""Build typed core events from a type name and a partial data dict, for tests that script
event streams (missing fields get neutral defaults)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from presence_gateway.core import events as ev

_BY_TYPE: dict[str, type[ev.Event]] = {
    c.type.value: c for c in (ev.VisitStarted, ev.VisitEnded, ev.ZoneEntered, ev.ZoneExited,
                              ev.ZoneDwell, ev.IdentityLinked, ev.OfferTriggered,
                              ev.CommandResult, ev.CommandRefused)
}
_DEFAULTS = {str: "", float: 0.0, int: 0, bool: False}


def make(type_: str, time: float, data: Mapping[str, Any] | None = None, **kw: Any) -> ev.Event:
    data = dict(data or {})
    if type_ == ev.EventType.FOOTFALL:
        return ev.FootfallCounted(time=time, store=kw.get("subject", "s"), counts=data)
    if type_ == ev.EventType.GATEWAY_STATS:
        return ev.GatewayStats(time=time, gateway=kw.get("subject", "g"), counts=data)
    if type_ == ev.EventType.OCCUPANCY:
        return ev.OccupancyChanged(time=time, store=kw.get("subject", "s"),
                                   state_topic=kw.get("topic_suffix", "occupancy"), state=data)
    cls = _BY_TYPE[type_]
    if cls is ev.OfferTriggered:
        data["offer_payload"] = data.pop("payload", {})
    if "zones" in data:
        data["zones"] = tuple(data["zones"])
    args: dict[str, Any] = {"time": time}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        if name == "time":
            continue
        if name in data:
            args[name] = data[name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            args[name] = _default(f.type)
    return cls(**args)


def _default(annotation: Any) -> Any:
    text = str(annotation)
    for t, v in _DEFAULTS.items():
        if text == t.__name__:
            return v
    if text.startswith("tuple"):
        return ()
    if text.startswith("Mapping") or text.startswith("dict"):
        return {}
    return None
