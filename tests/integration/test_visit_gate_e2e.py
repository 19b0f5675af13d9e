"""`events.visits: visitors` end to end: a real day replayed, and a live gateway into a broker.

Replay: the Brno 2023-02-28 day (../shared) through `replay --no-mqtt --events-out`, once with
the default config and once with `events: {visits: visitors}`: the gated run publishes exactly
the visitors' visit events of the default run (same visits, same events, same times) and none
of the passers-by's, with the same footfall. Live: wall clock, ticker running, a real
Mosquitto, a phone that stays and one that passes by."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from presence_gateway.adapters.mosquitto import LocalBroker
from presence_gateway.cli.main import main
from presence_gateway.core.model import AddressKind, Kind, Radio, Sighting
from tests.integration.live import live_events

DAY = (Path(__file__).resolve().parents[3] / "shared" / "data" / "captures" / "wifi"
       / "brno_sc6-61" / "position_1_sc6-61_2023-02-28_anonymized.pcap")
VISIT_TYPES = {"presence.visit.started", "presence.zone.entered", "presence.zone.dwell",
               "presence.zone.exited", "presence.visit.ended"}


def replay(tmp_path: Path, name: str, extra: str) -> list[dict[str, Any]]:
    cfg, out = tmp_path / f"{name}.yaml", tmp_path / f"{name}.jsonl"
    secret = tmp_path / "secret"  # one secret: both runs name the same visits
    secret.write_text("visit-gate-e2e-secret-0123456789")
    cfg.write_text(f"privacy: {{secret: 'file:{secret}'}}\n" + extra)
    assert main(["replay", "--no-mqtt", "-c", str(cfg), "--db", str(tmp_path / f"{name}.db"),
                 "--events-out", str(out), str(DAY)]) == 0
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def visit_key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["type"], e["time"], e["data"]["visit_id"])


@pytest.mark.skipif(not DAY.is_file(), reason=f"{DAY} (in ../shared) is absent")
def test_a_real_day_publishes_the_visitors_visits_only(tmp_path: Path) -> None:
    every = replay(tmp_path, "all", "")
    gated = replay(tmp_path, "visitors", "events: {visits: visitors}\n")
    kinds = {e["data"]["visit_id"]: e["data"]["classification"] for e in every
             if e["type"] == "presence.visit.ended"}
    visitors = {v for v, k in kinds.items() if k == "visitor"}
    assert len(visitors) >= 20 and len(kinds) - len(visitors) >= 200
    published = {e["data"]["visit_id"] for e in gated if e["type"] in VISIT_TYPES}
    # every visitor, and fixtures only where they walked in first; no passer-by
    assert visitors <= published
    assert {kinds[v] for v in published - visitors} <= {"fixture"}
    # each published visit complete: the same events at the same times as by default
    expected = sorted(visit_key(e) for e in every
                      if e["type"] in VISIT_TYPES and e["data"]["visit_id"] in published)
    assert sorted(visit_key(e) for e in gated if e["type"] in VISIT_TYPES) == expected
    footfall = [(e["time"], e["data"]["present"], e["data"]["passers_by"]) for e in every
                if e["type"] == "presence.footfall"]
    assert footfall == [(e["time"], e["data"]["present"], e["data"]["passers_by"])
                        for e in gated if e["type"] == "presence.footfall"]
    # the point of it: far fewer messages for the same people counts
    assert len(gated) < 0.6 * len(every)


class Street:
    """Live radio: a phone inside from the start (a visitor) and, 2.5 s in, another passing
    by for 0.3 s."""

    name = "radio"

    async def run(self, sink: Any) -> None:
        start = time.time()
        while True:
            now = time.time()
            sink.offer(self.probe(now, "3c2eff4a1b07", -50))
            if 2.5 <= now - start <= 2.8:
                sink.offer(self.probe(now, "3c2eff4a1b99", -60))
            await asyncio.sleep(0.05)

    @staticmethod
    def probe(ts: float, mac: str, rssi: int) -> Sighting:
        return Sighting(ts=ts, radio=Radio.WIFI, address=bytes.fromhex(mac),
                        address_kind=AddressKind.PUBLIC, rssi=rssi, channel=6,
                        kind=Kind.PROBE_REQUEST.value, seq=int(ts * 20) % 4096)


def test_live_gateway_publishes_the_visitor_and_counts_the_passer_by(
        tmp_path: Path, local_broker: LocalBroker) -> None:
    events = live_events(
        tmp_path, local_broker, [Street()], 5.5,
        "events: {visits: visitors}\nqueue: {wifi_repeat_interval: 0s}\n"
        "presence: {visit_timeout: 1s, sighting_window: 1s, stats_interval: 1s,\n"
        "  walk_in: {min_time: 2s, count_after: 0s}, footfall: {interval: 1s},\n"
        "  exit: {min_quiet: 1s}}\n")
    visits = [e for e in events if e["type"] in VISIT_TYPES]
    devices = {e["data"]["device"] for e in visits}
    assert len(devices) == 1, "only the visitor's visit is published"
    assert any(e["type"] == "presence.visit.started" for e in visits)
    passers = sum(e["data"]["passers_by"] for e in events
                  if e["type"] == "presence.footfall")
    assert passers == 1, "the passer-by is counted in footfall"
