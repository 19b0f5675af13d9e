"""`presence-gateway calibrate --plan WALK.yaml SENSOR=RECORDING ...`: a walk test's recordings
in, proposed per-sensor RSSI offsets and zone thresholds out (a config snippet on stdout).

The installer carries a known phone or beacon (its address or iBeacon id in the plan) to each
zone's centre and boundary at the times the plan lists, while every sensor records (`record
ble`, or any capture the replay reads). The device's address is used here only to pick its
readings; it is printed nowhere and stored nowhere.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from presence_gateway.cli.common import Subparsers, add_config
from presence_gateway.core.config import load_config
from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.core.presence.calibration import Reading, parse_plan, propose, snippet
from presence_gateway.core.privacy import parse_mac
from presence_gateway.errors import ConfigError, GatewayError


def register(sub: Subparsers) -> None:
    p = sub.add_parser("calibrate", help="propose RSSI offsets and zone thresholds from a walk",
                       description="Propose per-sensor RSSI offsets and zone thresholds from "
                                   "recordings of a walk test (see docs/presence.md).")
    p.add_argument("--plan", required=True, metavar="WALK.yaml",
                   help="the device and the spots with their times")
    p.add_argument("recordings", nargs="+", metavar="SENSOR=RECORDING",
                   help="one recording per sensor, named as in zones[].sensors")
    add_config(p, "gateway config (presence smoothing settings)")
    p.set_defaults(func=calibrate)


class _Collect:
    """A driver sink that keeps the known device's readings (everything else is dropped)."""

    def __init__(self, sensor: str, device: str) -> None:
        self.sensor = sensor
        self.address = parse_mac(device) if ":" in device else None
        self.hint = None if self.address is not None else f"ibeacon:{device.lower()}"
        self.readings: list[Reading] = []

    def _keep(self, s: Sighting) -> None:
        if s.rssi is None:
            return
        if s.address == self.address or (self.hint is not None
                                         and self.hint in s.identity_hints):
            self.readings.append(Reading(s.ts, self.sensor, float(s.rssi)))

    def offer(self, sighting: Sighting) -> None:
        self._keep(sighting)

    async def put_many(self, sightings: Iterable[Sighting]) -> None:
        for s in sightings:
            self._keep(s)

    def reject(self, rejection: Rejection) -> None:
        pass


async def _read(pairs: list[tuple[str, str]], device: str) -> list[Reading]:
    from presence_gateway.drivers.registry import create, recording
    out: list[Reading] = []
    for i, (sensor, path) in enumerate(pairs):
        sink = _Collect(sensor, device)
        await create(recording(path, f"walk-{i}")).run(sink)
        out += sink.readings
    return out


def calibrate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    try:
        plan_text = Path(args.plan).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(args.plan, "", None, f"cannot read file: {exc.strerror}") from None
    plan = parse_plan(plan_text, args.plan)
    pairs = []
    for spec in args.recordings:
        sensor, sep, path = spec.partition("=")
        if not sep or not sensor or not path:
            raise ConfigError(spec, "", None, "expected SENSOR=RECORDING, e.g. gw-door=door.jsonl")
        pairs.append((sensor, path))
    if ":" in plan.device and parse_mac(plan.device) is None:
        raise ConfigError(args.plan, "device", None, "not a MAC address or an iBeacon id")
    readings = asyncio.run(_read(pairs, plan.device))
    proposal = propose(plan, readings, cfg.presence)
    for w in proposal.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not proposal.zones:
        raise GatewayError("nothing to propose: " + "; ".join(proposal.warnings))
    print(f"# {len(readings)} readings of the device from {len(pairs)} sensor(s)")
    print(snippet(proposal), end="")
    return 0
