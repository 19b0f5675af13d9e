"""CloudEvents envelope: ids, sequence, topics, payload shape; validated against AsyncAPI."""

from __future__ import annotations

import orjson

from presence_gateway.core.envelope import Envelope, Topics, rfc3339, uuid7
from presence_gateway.core.events import CommandResult, OccupancyChanged, VisitStarted
from tests.contract import validate_event


def make(next_seq: int = 1) -> Envelope:
    return Envelope(topics=Topics("presence", "s1", "gw1"), source="urn:presence-gateway:s1:gw1",
                    next_seq=next_seq)


def test_uuid7_is_valid_and_time_sortable() -> None:
    a = uuid7(1_700_000_000.000, 0)
    b = uuid7(1_700_000_000.001, 0)
    assert a < b
    assert a[14] == "7" and a[19] in "89ab"
    assert uuid7(1.0, (1 << 74) - 1) != uuid7(1.0, 0)
    import uuid
    u = uuid.UUID(uuid7(1_700_000_000.5, 12345))
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert u.int >> 80 == 1_700_000_000_500


def test_rfc3339_is_utc_with_millis() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1677575702.1256) == "2023-02-28T09:15:02.125Z"
    env = make()
    for ts in (0.0, 1677575702.1256, 1677575702.999, 1677575703.0, 1.5e9 + 0.0004):
        assert env._time(ts) == rfc3339(ts)


def test_wrap_builds_structured_cloudevent_and_counts_sequence() -> None:
    env = make(next_seq=41)
    data = {"visit_id": "v1", "device": "0123456789abcdef", "radio": "wifi",
            "first_seen": 1677575700.0, "observations": 3, "rssi": -61.5}
    m1 = env.wrap(VisitStarted(time=1677575702.0, **data))  # type: ignore[arg-type]
    m2 = env.wrap(VisitStarted(time=1677575703.0, **data))  # type: ignore[arg-type]
    assert (m1.seq, m2.seq) == (41, 42) and env.next_seq == 43
    assert m1.topic == "presence/v1/s1/gw1/events/presence.visit.started"
    assert m1.id != m2.id and not m1.retain and m1.qos == 1
    body = orjson.loads(m1.payload)
    assert body["specversion"] == "1.0" and body["sequence"] == 41 and body["id"] == m1.id
    assert body["source"] == "urn:presence-gateway:s1:gw1" and body["subject"] == "v1"
    assert body["time"] == "2023-02-28T09:15:02.000Z" and body["data"] == data
    validate_event(body)


def test_retained_state_goes_to_state_topic() -> None:
    m = make().wrap(OccupancyChanged(time=5.0, store="s1", state_topic="occupancy/shoes",
                                     state={"zone": "shoes", "present": 3}))
    assert m.retain and m.topic == "presence/v1/s1/gw1/state/occupancy/shoes"


def test_command_result_goes_beside_the_command() -> None:
    m = make().wrap(CommandResult(time=5.0, command="offers.reload", command_id="c1", ok=True))
    assert m.topic == "presence/v1/s1/gw1/commands/offers.reload/result" and not m.retain
