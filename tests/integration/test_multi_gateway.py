"""Several gateways in one store, one real Mosquitto: one zone per device, one visit id.

Three full `Service` instances (gw-a, gw-b, gw-c; same store, same privacy secret, each with
its own SQLite outbox) run live (ticker, peers, control plane) in one event loop against one
real broker, on one `ManualClock`: the test moves time in 125 ms steps and, at every summary
interval, waits until each gateway has applied the other two's summaries, so the outcome does
not depend on how busy the host is. They are linked ONLY through the broker: each publishes
its peer summaries on `presence/v1/s1/sync/<gateway>` and applies the others'
(runtime/control.py). A scripted phone (one public Wi-Fi address) is heard by every gateway
with the RSSI its position gives: it stands by gw-a, walks to gw-b, stays, and leaves; gw-c
hears it weakly throughout.

Truth asserted: gw-a announces the visit and owns the `front` zone, hands over to gw-b
(`front` exited before `back` entered: one zone at a time), gw-b closes the visit; gw-c emits
no visit or zone event; every event carries the same visit id; the events reach the broker;
the summaries crossed the broker and carry no raw address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.core.config import GatewayConfig, parse_config
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.clock import ManualClock
from presence_gateway.runtime.service import Service
from tests.conftest import Subscriber

SECRET = "multi-gateway-test-secret-0123456789"
PHONE = bytes.fromhex("3c2eff4a1b07")  # a public (globally unique) Wi-Fi address
# Binary fractions, so the manual clock lands exactly on every period and summary interval.
STEP_S = 0.125
PERIOD_S = 0.125  # one probe per step at every gateway
SUMMARY_S = 0.5
T_START = 1_767_225_600.0
# Scripted timeline, seconds after the start signal.
WALK = (3.0, 4.5)  # walking from gw-a to gw-b
GONE_A, GONE_C, GONE_B = 4.5, 5.0, 6.5  # out of range of each gateway from then on


def config(tmp_path: Path, broker: LocalBroker, gw: str) -> GatewayConfig:
    text = f"""
store: {{id: s1}}
gateway: {{id: {gw}}}
mqtt: {{url: '{broker.url}'}}
storage: {{path: '{tmp_path / (gw + '.db')}', batch_interval: 50ms}}
privacy: {{secret: env:PG_SECRET}}
presence:
  visit_timeout: 2s
  zones:
    - {{name: front, sensors: [gw-a], enter_rssi: -75, leave_rssi: -80, min_confirm: 1s}}
    - {{name: back, sensors: [gw-b], enter_rssi: -75, leave_rssi: -80, min_confirm: 1s}}
    - {{name: hall, sensors: [gw-c], enter_rssi: -95, leave_rssi: -99, min_confirm: 1s}}
  kalman: {{process_noise: 100, measurement_noise: 25}}
  dwell_marks: [10m]
  walk_in: {{min_time: 1s, min_rssi: -70}}
  arbitration: {{summary_interval: {int(SUMMARY_S * 1000)}ms, stickiness_margin_db: 4}}
"""
    return parse_config(text, f"{gw}.yaml", env={"PG_SECRET": SECRET})


def ramp(t: float, a: float, b: float) -> float:
    """RSSI going linearly from `a` to `b` over the walk."""
    f = min(1.0, max(0.0, (t - WALK[0]) / (WALK[1] - WALK[0])))
    return a + (b - a) * f


PROFILES: dict[str, Callable[[float], float | None]] = {
    "gw-a": lambda t: ramp(t, -50.0, -86.0) if t < GONE_A else None,
    "gw-b": lambda t: ramp(t, -86.0, -50.0) if t < GONE_B else None,
    "gw-c": lambda t: -88.0 if t < GONE_C else None,
}


class ScriptedRadio:
    """A live driver: the phone as one gateway hears it, on the shared clock."""

    def __init__(self, gateway: str, start: asyncio.Event, t0: list[float],
                 clock: ManualClock) -> None:
        self.name = f"radio-{gateway}"
        self.profile = PROFILES[gateway]
        self.start, self.t0, self.clock = start, t0, clock

    async def run(self, sink: Any) -> None:
        await self.start.wait()
        while True:
            now = self.clock.now()
            rssi = self.profile(now - self.t0[0])
            if rssi is None:
                break
            sink.offer(Sighting(ts=now, radio=Radio.WIFI, address=PHONE,
                                address_kind=AddressKind.PUBLIC, rssi=round(rssi), channel=6,
                                kind=Kind.PROBE_REQUEST.value))
            await self.clock.sleep(PERIOD_S)
        await asyncio.Event().wait()  # a live radio runs until the service stops it


VISIT_TYPES = ("presence.visit.", "presence.zone.")


def visit_events(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["type"].removeprefix("presence."), e["data"].get("zone")) for e in events
            if e["type"].startswith(VISIT_TYPES)]


async def wait_until(cond: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    """Wait in real time (broker round trips, SQLite) while the manual clock stands still."""
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)


class Store:
    """The three services on one clock; `step` moves time and waits for the consequences."""

    def __init__(self, services: list[Service], clock: ManualClock) -> None:
        self.services, self.clock = services, clock
        self.summaries = 0  # summary rounds every gateway must have heard from every other

    def heard(self, s: Service, peer: str) -> int:
        assert s.runtime is not None
        return s.runtime.control.peers_heard[peer]

    def all_heard(self, rounds: dict[tuple[str, str], int]) -> bool:
        return all(self.heard(s, peer) >= n for (gw, peer), n in rounds.items()
                   for s in self.services if s.cfg.gateway_id == gw)

    async def settle(self) -> None:
        """Every woken radio offered, every consumer fed, every tick and summary done."""
        for _ in range(20):
            await asyncio.sleep(0)
        await wait_until(lambda: all(s.runtime is not None and s.runtime.channel.depth == 0
                                     for s in self.services), "a consumer is stuck")
        for _ in range(20):
            await asyncio.sleep(0)

    async def step(self, baseline: dict[tuple[str, str], int]) -> None:
        before = self.clock.now()
        self.clock.advance(STEP_S)
        await self.settle()
        if int((self.clock.now() - T_START) / SUMMARY_S) > int((before - T_START) / SUMMARY_S):
            self.summaries += 1
            want = {k: n + self.summaries for k, n in baseline.items()}
            await wait_until(lambda: self.all_heard(want),
                             f"summary round {self.summaries} did not cross the broker")
            await self.settle()


async def scenario(tmp_path: Path, broker: LocalBroker,
                   gateways: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    start, t0 = asyncio.Event(), [0.0]
    clock = ManualClock(T_START)
    produced: dict[str, list[dict[str, Any]]] = {gw: [] for gw in gateways}
    services = []
    for gw in gateways:
        def keep(m: Any, gw: str = gw) -> None:
            produced[gw].append(orjson.loads(m.payload))
        services.append(Service(config(tmp_path, broker, gw),
                                RunOptions(mode=Mode.LIVE, on_message=keep, flush_timeout_s=10,
                                           clock=clock),
                                [ScriptedRadio(gw, start, t0, clock)]))
    tasks = [asyncio.create_task(s.run()) for s in services]
    store = Store(services, clock)
    pairs = [(a, b) for a in gateways for b in gateways if a != b]
    # Warm-up, phone absent: every gateway connects and hears the others (the summaries sent
    # before a peer had subscribed are lost, as in a store); then a quiet moment, and the
    # counts become the baseline every later summary round is counted from.
    await wait_until(lambda: all(s.runtime is not None and s.runtime.publisher is not None
                                 and s.runtime.publisher.connected for s in services),
                     "the gateways never connected")
    while not store.all_heard({p: 1 for p in pairs}):
        clock.advance(SUMMARY_S)
        await wait_until(lambda: clock.sleepers > 0, "nothing sleeps on the clock")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.2)
    baseline = {(a, b): store.heard(next(s for s in services if s.cfg.gateway_id == a), b)
                for a, b in pairs}
    t0[0] = clock.now()
    start.set()
    await store.settle()
    # The visit ends visit_timeout after the last sighting (gw-b's), at the next tick.
    while clock.now() < t0[0] + GONE_B + 2.0 + 2.0:
        await store.step(baseline)
    for s in services:
        s.stop_event.set()
    for summary in await asyncio.gather(*tasks):
        assert summary.outbox_depth == 0 and not summary.driver_errors
    return produced


def test_three_gateways_agree_on_one_zone_and_one_visit(
        tmp_path: Path, mosquitto: Callable[..., LocalBroker],
        subscriber: Callable[..., Subscriber]) -> None:
    broker = mosquitto()
    wire = subscriber(broker, "presence/v1/s1/#")
    produced = asyncio.run(scenario(tmp_path, broker, ("gw-a", "gw-b", "gw-c")))

    a, b, c = (visit_events(produced[gw]) for gw in ("gw-a", "gw-b", "gw-c"))
    assert a == [("visit.started", None), ("zone.entered", "front"), ("zone.exited", "front")]
    assert b == [("zone.entered", "back"), ("zone.exited", "back"), ("visit.ended", None)]
    assert c == [], "a gateway that never owned the phone emitted visit events"

    mine = [e for gw in produced for e in produced[gw] if e["type"].startswith(VISIT_TYPES)]
    assert len({e["data"]["visit_id"] for e in mine}) == 1, "one visit id store-wide"
    assert len({e["data"]["device"] for e in mine}) == 1, "device keys agree across gateways"
    by_time = [(e["type"].removeprefix("presence."), e["data"].get("zone"))
               for e in sorted(mine, key=lambda e: (e["time"], e["sequence"]))]
    assert by_time == [("visit.started", None), ("zone.entered", "front"),
                       ("zone.exited", "front"), ("zone.entered", "back"),
                       ("zone.exited", "back"), ("visit.ended", None)]
    ended = next(e for e in mine if e["type"] == "presence.visit.ended")
    started = next(e for e in mine if e["type"] == "presence.visit.started")
    assert ended["data"]["first_seen"] == started["data"]["first_seen"]
    assert ended["data"]["last_seen"] > started["data"]["first_seen"] + GONE_A

    # Over the real broker: the events arrived, and so did the summaries that linked them.
    ids = {e["id"] for e in mine}
    got = wire.wait_for(1, timeout=1.0)
    deadline = time.monotonic() + 10.0
    while not ids <= {orjson.loads(p).get("id") for t, p, _ in got if "/events/" in t}:
        assert time.monotonic() < deadline, "visit events never reached the broker"
        time.sleep(0.05)
        got = wire.snapshot()
    sync = [(t, orjson.loads(p)) for t, p, _ in got if "/sync/" in t]
    senders = {t.rsplit("/", 1)[-1] for t, _ in sync}
    assert senders == {"gw-a", "gw-b", "gw-c"}
    device = mine[0]["data"]["device"]
    lines = [line for _, items in sync for line in items]
    assert any(line["device"] == device for line in lines)
    raw = {PHONE.hex(), PHONE.hex(":")}
    assert not any(r in orjson.dumps(lines).decode() for r in raw), "raw address in a summary"
