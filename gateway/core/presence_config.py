"""The `presence` section of the config: visits, stats and (later) zones.

Read through the shared Reader so errors name file, key and line like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.yamlread import Reader


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    visit_timeout_s: float = 300.0
    stats_interval_s: float = 60.0


def read(r: Reader, section: str) -> PresenceSettings:
    r.mapping(section)
    r.known_keys(section, {"visit_timeout", "stats_interval"})
    return PresenceSettings(
        visit_timeout_s=r.duration(f"{section}.visit_timeout", 300.0, minimum=1.0),
        stats_interval_s=r.duration(f"{section}.stats_interval", 60.0, minimum=1.0),
    )
