"""Home Assistant MQTT discovery: the gateway's sensors described for HA, as retained configs.

Pure: settings and the topic tree in, {config topic: payload} out. The sensors read the state
the gateway already publishes (retained `state/occupancy[/<zone>]` and `status`), so discovery
adds no event and no second source of truth:
- per zone and for the whole store: people present (`data.present`);
- for the store: today's entries and passers-by;
- the gateway's connectivity from its status/LWT (`online`/`offline`).
Each config names one HA device per gateway; `unique_id`s are stable across restarts, so HA
keeps history and user renames. An empty retained payload on a config topic removes that
entity from HA (what the shell publishes for topics no longer wanted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from presence_gateway.core.envelope import Topics

_SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """`home_assistant: {discovery: bool, prefix: str}` (off by default)."""

    enabled: bool = False
    prefix: str = "homeassistant"


def _slug(*parts: str) -> str:
    return "_".join(_SAFE.sub("_", p) for p in parts)


def discovery_messages(settings: DiscoverySettings, topics: Topics, *, store_id: str,
                       gateway_id: str, zones: Sequence[str], version: str
                       ) -> dict[str, bytes]:
    """The retained config messages HA should hold (empty when discovery is off)."""
    if not settings.enabled:
        return {}
    node = _slug("presence_gateway", store_id, gateway_id)
    device = {"identifiers": [node], "name": f"presence-gateway {store_id}/{gateway_id}",
              "manufacturer": "presence-gateway", "model": "in-store presence gateway",
              "sw_version": version}
    availability = {"availability_topic": topics.status,
                    "availability_template": "{{ value_json.state }}",
                    "payload_available": "online", "payload_not_available": "offline"}
    out: dict[str, bytes] = {}

    def sensor(object_id: str, name: str, state_topic: str, field: str, unit: str,
               state_class: str) -> None:
        config: dict[str, Any] = {
            "name": name, "unique_id": f"{node}_{object_id}", "object_id": f"{node}_{object_id}",
            "state_topic": state_topic, "value_template": f"{{{{ value_json.data.{field} }}}}",
            "unit_of_measurement": unit, "state_class": state_class, "device": device,
            **availability}
        out[f"{settings.prefix}/sensor/{node}/{object_id}/config"] = orjson.dumps(config)

    sensor("present", "People in store", topics.state("occupancy"), "present", "people",
           "measurement")
    sensor("entries_today", "Entries today", topics.state("occupancy"), "entries", "people",
           "total_increasing")
    sensor("passers_by_today", "Passers-by today", topics.state("occupancy"), "passers_by",
           "people", "total_increasing")
    for zone in zones:
        sensor(_slug("zone", zone, "present"), f"People in {zone}",
               topics.state(f"occupancy/{zone}"), "present", "people", "measurement")
    status = {"name": "Gateway", "unique_id": f"{node}_status", "object_id": f"{node}_status",
              "state_topic": topics.status, "value_template": "{{ value_json.state }}",
              "payload_on": "online", "payload_off": "offline",
              "device_class": "connectivity", "entity_category": "diagnostic", "device": device}
    out[f"{settings.prefix}/binary_sensor/{node}/status/config"] = orjson.dumps(status)
    return out


def removals(published: Sequence[str], wanted: dict[str, bytes]) -> dict[str, bytes]:
    """Empty retained payloads for configs published before and no longer wanted (a zone
    removed, discovery switched off): HA deletes those entities."""
    return {topic: b"" for topic in published if topic not in wanted}
