"""central/model.py: topic parsing, per-gateway ordering, holes, resend requests, ownership."""

from __future__ import annotations

import orjson

from presence_gateway.central.model import (
    Event,
    Gap,
    Output,
    Partition,
    ResendRequest,
    Status,
    address,
    owner_of,
    parse,
    partitions,
    projection,
)
from presence_gateway.core.envelope import Topics, partition_of


def ev(seq: int, gw: str = "gw1", tag: int | None = None) -> Event:
    return Event(f"id-{gw}-{seq}", "s1", gw, seq, "presence.footfall", "t", None,
                 {"present": 1, "entries": 2, "exits": 0}, seq if tag is None else tag)


def test_topics_of_both_layouts_parse() -> None:
    v2 = Topics("acme/eu", "s-9", "gw-2", layout="v2", partitions=16)
    a = address(v2.event("presence.visit.started"))
    assert a is not None and (a.store, a.gateway, a.kind) == ("s-9", "gw-2", "events")
    assert v2.base.split("/")[3] == partition_of("s-9", 16)
    a1 = address("presence/v1/s1/gw1/events/presence.footfall")
    assert a1 is not None and (a1.key, a1.kind) == ("s1/gw1", "events/presence.footfall")
    assert address("other/thing") is None
    st = parse(v2.status, orjson.dumps({"state": "offline", "time": 5}))
    assert st == Status("s-9", "gw-2", "offline", 5.0)
    body = {"id": "x", "sequence": 3, "type": "presence.footfall", "data": {"present": 2}}
    got = parse(v2.event("presence.footfall"), orjson.dumps(body), 77)
    assert isinstance(got, Event) and (got.seq, got.tag, got.key) == (3, 77, "s-9/gw-2")
    assert parse(v2.status, b"not json") is None
    assert parse(v2.event("x"), orjson.dumps({"id": "x"})) is None  # no sequence


def test_in_order_events_are_released_at_once() -> None:
    p, out = Partition(), Output()
    p.start("s1/gw1", 4)
    for s in (5, 6, 7):
        p.offer(ev(s), 0.0, out)
    assert [e.seq for e in out.events] == [5, 6, 7] and out.tags == [5, 6, 7]
    assert p.next_sequence("s1/gw1") == 8


def test_a_hole_holds_later_events_until_it_fills() -> None:
    p, out = Partition(gap_timeout_s=10), Output()
    p.start("s1/gw1", 0)
    p.offer(ev(1), 0.0, out)
    p.offer(ev(3), 0.1, out)
    p.offer(ev(4), 0.2, out)
    p.offer(ev(3, tag=99), 0.3, out)  # a redelivered copy of a held one
    assert [e.seq for e in out.events] == [1] and p.held() == 2
    p.offer(ev(2), 1.0, out)
    assert [e.seq for e in out.events] == [1, 2, 3, 4]
    assert sorted(out.tags) == [1, 2, 3, 4, 99] and p.held() == 0 and not out.gaps


def test_a_hole_is_asked_for_then_skipped_after_the_timeout() -> None:
    p = Partition(gap_timeout_s=5, resend_after_s=1)
    p.start("s1/gw1", 10)
    out = Output()
    p.offer(ev(14), 0.0, out)
    p.tick(0.5, out)
    assert not out.events and not out.resend
    p.tick(1.5, out)
    p.tick(2.0, out)  # asked once per hole
    assert out.resend == [ResendRequest("s1", "gw1", 11, 13)]
    assert out.resend[0].args() == {"from_sequence": 11, "to_sequence": 13}
    assert out.resend[0].topic("presence", layout="v1") \
        == "presence/v1/s1/gw1/commands/events.resend"
    assert out.resend[0].topic("presence", partitions=16) \
        == f"presence/v2/{partition_of('s1', 16)}/s1/gw1/commands/events.resend"
    p.tick(5.0, out)
    assert out.gaps == [Gap("s1", "gw1", 11, 13)] and [e.seq for e in out.events] == [14]
    late = Output()
    p.offer(ev(12), 6.0, late)  # a late fill is still applied (the database dedupes by id)
    assert [e.seq for e in late.events] == [12]


def test_duplicates_below_the_position_go_to_the_database_and_reset_keeps_position() -> None:
    p, out = Partition(), Output()
    p.start("s1/gw1", 5)
    p.offer(ev(3), 0.0, out)
    p.offer(ev(7), 0.0, out)
    assert [e.seq for e in out.events] == [3] and p.held() == 1
    p.reset()
    assert p.held() == 0 and p.next_sequence("s1/gw1") == 6


def test_a_new_gateway_starts_at_1_even_when_a_later_event_comes_first() -> None:
    # After a consumer's takeover the broker may redeliver a gateway's beginning behind a
    # later event: the first delivery is not the start (tests/fleet/test_fleet.py once saw
    # sequence 113 applied before 1).
    p, out = Partition(gap_timeout_s=10), Output()
    p.start("s1/gw1", None)  # nothing committed for it yet
    p.offer(ev(4), 0.0, out)
    assert not out.events and p.held() == 1
    for s in (1, 2, 3):
        p.offer(ev(s), 1.0, out)
    assert [e.seq for e in out.events] == [1, 2, 3, 4] and not out.gaps and p.held() == 0


def test_a_gateway_first_seen_mid_stream_starts_at_the_lowest_seen_without_a_gap() -> None:
    p = Partition(gap_timeout_s=10, resend_after_s=1)
    out = Output()
    for s in (502, 500, 501):  # central joined a running fleet: 1..499 are not a hole
        p.offer(ev(s), 0.0, out)
    p.tick(5.0, out)
    assert not out.events and not out.resend  # nothing to ask for before the start
    p.tick(10.0, out)
    assert [e.seq for e in out.events] == [500, 501, 502] and not out.gaps
    assert p.next_sequence("s1/gw1") == 503


def test_too_many_held_skips_without_waiting() -> None:
    p, out = Partition(max_held=3), Output()
    p.start("s1/gw1", 0)
    for s in (3, 4, 5, 6):
        p.offer(ev(s), 0.0, out)
    assert out.gaps == [Gap("s1", "gw1", 1, 2)] and [e.seq for e in out.events] == [3, 4, 5, 6]


def test_ownership_is_stable_and_moves_only_the_leavers_share() -> None:
    parts = partitions(64)
    three = {p: owner_of(p, ["a", "b", "c"]) for p in parts}
    two = {p: owner_of(p, ["a", "b"]) for p in parts}
    assert {three[p] for p in parts} == {"a", "b", "c"}
    assert all(two[p] == three[p] for p in parts if three[p] != "c")


def test_projection_rows() -> None:
    table, cols, vals = projection(ev(1)) or ("", (), ())
    assert table == "footfall" and dict(zip(cols, vals, strict=True))["entries"] == 2
    visit = Event("v", "s1", "g", 1, "presence.visit.ended", "t", "v1",
                  {"visit_id": "v1", "device": "d", "duration_s": 12.5})
    row = projection(visit)
    assert row is not None and row[0] == "visits" and "ended" in row[2]


def test_the_simulated_fleet_stream_keeps_the_event_contract() -> None:
    from presence_gateway.core.envelope import Envelope
    from tests.contract import validate_event
    from tests.fleet.sim import stream

    env = Envelope(topics=Topics("presence", "s1", "gw1", layout="v2"),
                   source="urn:presence-gateway:s1:gw1")
    msgs = [env.wrap(e) for e in stream("s1", "gw1", 10)]
    for m in msgs:
        validate_event(orjson.loads(m.payload))
    assert {m.topic for m in msgs if not m.retain} == {f"{env.topics.base}/events"}
