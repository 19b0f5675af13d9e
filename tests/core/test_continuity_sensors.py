"""A snapshot that cannot carry the day still carries what was learnt of the sensors.

core/continuity.py: other presence settings (an edited config, a new version's defaults) or a
snapshot older than a day do not hand over the day's units and counters, but each Wi-Fi
sensor's learnt placement offset and a recording's channel plans belong to the radios. A
gateway that dropped them would count cautiously again (docs/presence.md "A sensor not learnt
yet") and apply no offset until two busy windows re-teach it.
"""

from __future__ import annotations

import dataclasses
import random

from presence_gateway.core.continuity import adopt, freeze, snapshot_key, thaw
from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.placement import WINDOW_READINGS
from presence_gateway.core.presence.sessions import PresenceEngine
from tests.core.presence_helpers import run, wifi
from tests.core.test_presence_placement import occupied

KEY = snapshot_key(b"store-secret-0123456789")


def gateway(settings: PresenceSettings) -> tuple[Pipeline, PresenceEngine]:
    engine = PresenceEngine(settings, gateway_id="gw", store_id="s")
    envelope = Envelope(topics=Topics("presence", "s", "gw"), qos=1, next_seq=1,
                        source="urn:presence-gateway:s:gw")
    return Pipeline(engine=engine, envelope=envelope, gateway_id="gw"), engine


def learnt_gateway() -> tuple[bytes, float]:
    """A gateway whose sensor, 8 dB hot, learnt its offset in a busy hour; frozen."""
    pipeline, engine = gateway(PresenceSettings())
    rnd = random.Random(21)
    crowd = [wifi(float(i) * 0.5, f"c{i % 300}", round(x))
             for i, x in enumerate(occupied(8.0, WINDOW_READINGS * 6, rnd))]
    run(engine, crowd, until=crowd[-1].ts)
    assert engine.wifi_placement["gw"]["source"] == "learnt"
    assert engine.tracked > 0
    return freeze(pipeline, engine, taken_at=crowd[-1].ts, key=KEY), crowd[-1].ts


def test_other_settings_keep_the_sensors_placement_and_drop_the_day() -> None:
    blob, _ = learnt_gateway()
    edited = dataclasses.replace(PresenceSettings(), visit_timeout_s=900.0)
    pipeline, engine = gateway(edited)
    thawed = thaw(blob, key=KEY, engine=engine, now=None, max_age_s=86400.0)
    assert not isinstance(thawed, str)
    assert not thawed.day and "settings changed" in thawed.why
    adopt(pipeline, engine, thawed)
    place = engine.wifi_placement["gw"]
    assert place["source"] == "learnt" and place["cautious"] is False
    assert place["offset_db"] in (-9.0, -8.0, -7.0)
    assert engine.tracked == 0, "the day's units were made under other rules: not taken"
    assert engine.s.visit_timeout_s == 900.0, "the new settings stay"


def test_an_old_snapshot_keeps_the_sensors_and_the_same_settings_keep_the_day() -> None:
    blob, taken = learnt_gateway()
    pipeline, engine = gateway(PresenceSettings())
    thawed = thaw(blob, key=KEY, engine=engine, now=taken + 3 * 86400.0, max_age_s=86400.0)
    assert not isinstance(thawed, str) and not thawed.day and "too old" in thawed.why
    adopt(pipeline, engine, thawed)
    assert engine.wifi_placement["gw"]["source"] == "learnt" and engine.tracked == 0
    pipeline, engine = gateway(PresenceSettings())
    fresh = thaw(blob, key=KEY, engine=engine, now=taken + 60.0, max_age_s=86400.0)
    assert not isinstance(fresh, str) and fresh.day
    adopt(pipeline, engine, fresh)
    assert engine.tracked > 0 and engine.wifi_placement["gw"]["source"] == "learnt"


def test_another_gateways_snapshot_carries_nothing() -> None:
    blob, _ = learnt_gateway()
    other = PresenceEngine(PresenceSettings(), gateway_id="gw-2", store_id="s")
    assert thaw(blob, key=KEY, engine=other, now=None, max_age_s=86400.0) == \
        "taken by another gateway or store"
