"""The end of a replay: the clock runs on only as far as a live gateway's would.

`Pipeline.finish` used to push the clock a whole day past the last sighting, so the last
footfall, occupancy and stats events were dated the next day with the day's totals reset to 0.
Now it stops once every visit has ended and been counted (the engine's quiet horizon after the
latest capture time), and the last footfall carries the recording's day, exits included.
"""

from __future__ import annotations

import orjson

from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from tests.core.presence_helpers import ble, wifi

DAY0 = 1_748_851_200.0  # 2025-06-02 08:00 UTC


def test_finish_ends_when_the_last_visit_does_not_a_day_later() -> None:
    engine = PresenceEngine(PresenceSettings(), gateway_id="gw-1", store_id="s1")
    envelope = Envelope(topics=Topics("presence", "s1", "gw-1"), qos=1, next_seq=1,
                        source="urn:presence-gateway:s1:gw-1")
    pipeline = Pipeline(engine=engine, envelope=envelope, gateway_id="gw-1")
    warm = [ble(DAY0 - 3600.0, "shelf-beacon", -50, kind="ibeacon")]  # no cold start
    trace = warm + [wifi(DAY0 + t, "shopper", -60) for t in range(0, 1200, 20)]
    out = pipeline.feed_many(trace, capture_clock=True)
    out += pipeline.finish()
    events = [orjson.loads(m.payload) for m in out]
    last_seen = trace[-1].ts
    end = last_seen + engine.quiet_horizon_s
    assert engine.quiet_horizon_s < 3 * 3600
    times = [pipeline_time(e) for e in events]
    assert max(times) <= end + 1e-3, "nothing may be dated past the quiet horizon"
    types = [e["type"] for e in events]
    assert "presence.visit.ended" in types
    assert types[-1] == "presence.gateway.stats" and abs(times[-1] - end) < 1e-3
    footfall = [e for e in events if e["type"] == "presence.footfall"]
    assert footfall[-1]["data"]["today"]["entries"] == 1, "the day's totals survive the end"
    assert footfall[-1]["data"]["today"]["exits"] == 1
    assert int(times[-1] // 86400) == int(DAY0 // 86400)


def pipeline_time(event: dict[str, object]) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
