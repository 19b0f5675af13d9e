"""A mass visit end comes out in bounded batches, with the same events as in one go.

100k devices whose visits end together used to build ~200k events in one list (1 GB of RSS
with their messages). The engine now ends at most `expire_batch` units per `tick` and says
`backlog`; the pipeline's `*_batches` forms hand over one batch at a time. The times do not
depend on when a batch ran: a visit ends at last_seen + visit_timeout.
"""

from __future__ import annotations

import orjson

from presence_gateway.core.envelope import Envelope, Topics
from presence_gateway.core.events import VisitEnded
from presence_gateway.core.model import Observation
from presence_gateway.core.pipeline import Pipeline
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from tests.core.presence_helpers import ble

DAY0 = 1_748_851_200.0  # 2025-06-02 08:00 UTC
UNITS = 50_000
BATCH = 1000
# A unit gives at most a zone exit and a visit end; footfall, occupancy and stats add a few.
BOUND = 2 * BATCH + 16


def crowd(n: int, t0: float = DAY0) -> list[Observation]:
    """n devices present at once: each heard twice (min_sightings), 60 s apart."""
    first = [ble(t0 + i * 1e-3, f"dev-{i:06x}", -60) for i in range(n)]
    return first + [ble(o.ts + 60.0, o.device, -62) for o in first]


def engine(batch: int = BATCH) -> PresenceEngine:
    e = PresenceEngine(PresenceSettings(), gateway_id="gw-1", store_id="s1")
    e.expire_batch = batch
    return e


def pipeline(e: PresenceEngine) -> Pipeline:
    envelope = Envelope(topics=Topics("presence", "s1", "gw-1"), qos=1, next_seq=1,
                        source="urn:presence-gateway:s1:gw-1")
    return Pipeline(engine=e, envelope=envelope, gateway_id="gw-1")


def test_a_mass_expiry_never_returns_more_than_the_bound_and_ends_every_visit() -> None:
    e = engine()
    trace = crowd(UNITS)
    for obs in trace:
        e.feed(obs)
    assert e.tracked == UNITS
    last_seen = {o.device: o.ts for o in trace}
    late = trace[-1].ts + 4 * 3600.0  # processed hours after they left (a clock jump)
    ended: list[VisitEnded] = []
    calls = 0
    while True:
        out = e.tick(late)
        calls += 1
        assert len(out) <= BOUND
        ended += [ev for ev in out if isinstance(ev, VisitEnded)]
        if not e.backlog:
            break
    assert calls >= UNITS // BATCH
    assert len(ended) == UNITS and e.tracked == 0
    timeout = e.s.visit_timeout_s
    assert all(ev.time == last_seen[ev.device] + timeout for ev in ended), \
        "a visit ends at last seen + timeout, not when its batch ran"


def _events(out: list[bytes]) -> list[tuple[str, str, object]]:
    """Type, time and data of every message, ids and sequence numbers aside."""
    events = [orjson.loads(p) for p in out]
    return [(ev["type"], ev["time"], _data(ev["data"])) for ev in events]


def _ended(out: list[bytes]) -> int:
    return sum(orjson.loads(p)["type"] == "presence.visit.ended" for p in out)


def _data(data: dict[str, object]) -> object:
    return {k: v for k, v in data.items() if k not in ("events",)}


def test_the_finish_of_a_replay_streams_batches_with_the_events_of_one_go() -> None:
    trace = crowd(5_000)
    one, split = pipeline(engine(batch=10**9)), pipeline(engine(batch=300))
    assert _events([m.payload for m in one.feed_many(trace, capture_clock=True)]) == \
        _events([m.payload for m in split.feed_many(trace, capture_clock=True)])
    whole = [m.payload for m in one.finish()]
    parts = [[m.payload for m in p] for p in split.finish_batches()]
    assert len(parts) >= 5_000 // 300
    assert all(len(p) <= 2 * 300 + 16 for p in parts)
    streamed = [m for p in parts for m in p]
    assert _ended(streamed) == 5_000, \
        "the finish of a replay ends every visit"
    assert _events(streamed) == _events(whole)


def test_a_gap_in_a_capture_ends_the_crowd_batch_by_batch_as_it_would_in_one_go() -> None:
    trace = crowd(3_000)
    back = [ble(trace[-1].ts + 7200.0, "late-comer", -60)]  # closing time, then one device
    one, split = pipeline(engine(batch=10**9)), pipeline(engine(batch=250))
    whole = one.feed_many(trace + back, capture_clock=True)
    first = [m.payload for m in split.feed_many(trace, capture_clock=True)]
    parts = [[m.payload for m in p] for p in split.feed_batches(back, capture_clock=True)]
    assert len(parts) >= 3_000 // 250
    assert all(len(p) <= 2 * 250 + 16 for p in parts)
    parts.insert(0, first)
    assert _events([m for p in parts for m in p]) == _events([m.payload for m in whole])
    assert _ended([m for p in parts for m in p]) == 3_000


def test_the_list_forms_are_the_batches_joined() -> None:
    e = engine(batch=100)
    for obs in crowd(1_000):
        e.feed(obs)
    p = pipeline(e)
    out = p.tick(DAY0 + 9 * 3600.0)
    ends = [ev for ev in (orjson.loads(m.payload) for m in out)
            if ev["type"] == "presence.visit.ended"]
    assert len(ends) == 1_000 and not e.backlog
