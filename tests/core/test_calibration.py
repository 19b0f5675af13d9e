"""Calibration from a walk test, on recordings built from a real captured iBeacon advert.

The advert is the beacontools iBeacon vector (a real frame, MIT); the walk puts it at each
zone's centre and boundary with two sensors, one radio 3 dB hotter than the other, and RSSI
noise of +-2 dB. A stranger's advert (the Eddystone vector) is interleaved and must be ignored.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from presence_gateway.cli.main import main
from presence_gateway.core.config import parse_config
from presence_gateway.core.presence.calibration import (
    Reading,
    parse_plan,
    propose,
    snippet,
)
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.errors import ConfigError, ConfigErrors

BEACON = "41424344-4546-4748-4940-414243444546/1/2"
MFR = {"76": "02154142434445464748494041424344454600010002f8"}  # beacontools test_ibeacon
STRANGER = {"feaa": "00e3123456789012346789010000000000010000"}   # beacontools eddystone uid
T0 = 1_767_225_600.0
PLAN = f"""device: {BEACON}
spots:
  - {{zone: entrance, at: centre, from: 0s, to: 60s}}
  - {{zone: entrance, at: boundary, from: 70s, to: 130s}}
  - {{zone: shoes, at: centre, from: 140s, to: 200s}}
  - {{zone: shoes, at: boundary, from: 210s, to: 270s}}
"""
# (start, end, {sensor: true RSSI}) of the walk; door's radio reads 3 dB hot.
LEVELS = [(0, 60, {"gw-door": -52, "gw-shoes": -80}), (70, 130, {"gw-door": -66, "gw-shoes": -78}),
          (140, 200, {"gw-door": -79, "gw-shoes": -55}),
          (210, 270, {"gw-door": -77, "gw-shoes": -70})]


def walk(tmp_path: Path) -> dict[str, Path]:
    rnd = random.Random(7)
    files = {}
    for sensor in ("gw-door", "gw-shoes"):
        lines = []
        for start, end, level in LEVELS:
            t = float(start)
            while t < end:
                rssi = level[sensor] + rnd.randint(-2, 2)
                lines.append({"ts": T0 + t, "address": "c0:11:22:33:44:55",
                              "address_type": "random", "rssi": rssi,
                              "manufacturer_data": MFR, "channel": 37})
                lines.append({"ts": T0 + t + 0.1, "address": "d0:11:22:33:44:66",
                              "address_type": "random", "rssi": -40,
                              "service_data": STRANGER, "channel": 38})
                t += 1.0
        path = tmp_path / f"{sensor}.jsonl"
        path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
        files[sensor] = path
    return files


def test_proposal_equalises_the_radios_and_sets_the_boundary(tmp_path: Path) -> None:
    plan = parse_plan(PLAN, "walk.yaml")
    rnd = random.Random(3)
    readings = [Reading(T0 + t + 0.5, s, lvl + rnd.uniform(-2, 2))
                for start, end, level in LEVELS for t in range(start, end)
                for s, lvl in level.items()]
    p = propose(plan, readings, PresenceSettings())
    assert dict(p.offsets) == {"gw-door": -1.5, "gw-shoes": 1.5}
    zones = {z.zone: z for z in p.zones}
    assert zones["entrance"].sensor == "gw-door" and zones["shoes"].sensor == "gw-shoes"
    for z in zones.values():
        assert -69 <= z.enter_rssi <= -67 and z.leave_rssi <= z.enter_rssi - 3
        assert z.flaps_per_hour == 0
    assert not p.warnings


def test_too_few_readings_and_an_unheard_zone_are_warned() -> None:
    plan = parse_plan(PLAN, "walk.yaml")
    p = propose(plan, [Reading(T0, "gw-door", -52.0), Reading(T0 + 75, "gw-door", -66.0)],
                PresenceSettings())
    assert any("only 1 boundary readings" in w for w in p.warnings)
    assert any("zone shoes: no reading" in w for w in p.warnings)


@pytest.mark.parametrize("text, where", [("spots: []\n", "device"),
                                         ("device: x\nspots:\n  - {zone: a, at: middle, "
                                          "from: 0, to: 1}\n", "spots[0].at"),
                                         ("device: x\nspots:\n  - {zone: a, at: centre, "
                                          "from: 5s, to: 1s}\n", "spots[0].to")])
def test_plan_errors_name_the_key(text: str, where: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        parse_plan(text, "walk.yaml")
    assert f" {where}:" in str(info.value)


def test_cli_on_recordings_gives_a_snippet_the_gateway_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = walk(tmp_path)
    (tmp_path / "walk.yaml").write_text(PLAN)
    rc = main(["calibrate", "--plan", str(tmp_path / "walk.yaml"),
               f"gw-door={files['gw-door']}", f"gw-shoes={files['gw-shoes']}"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "c0:11" not in out.out + out.err  # the device's address is printed nowhere
    cfg = parse_config(out.out, "snippet.yaml", env={})
    offsets = dict(cfg.presence.rssi_offsets)
    assert offsets == {"gw-door": -1.5, "gw-shoes": 1.5}
    zones = {z.name: z for z in cfg.presence.zones}
    assert zones["entrance"].sensors == ("gw-door",)
    assert -69 <= zones["shoes"].enter_rssi <= -67
    assert snippet  # the module's formatter produced what parse_config just accepted


def test_a_noisy_boundary_is_reported_as_flapping() -> None:
    plan = parse_plan("device: x\nspots:\n  - {zone: a, at: boundary, from: 0s, to: 600s}\n",
                      "walk.yaml")
    rnd = random.Random(11)
    # A doorway sensor behind a metal shelf: 14 dB swings and fades every few seconds.
    readings = [Reading(T0 + t, "gw", -68 + rnd.choice((-14, 0, 14)))
                for t in range(0, 600)]
    p = propose(plan, readings, PresenceSettings(kalman_process_noise=50.0,
                                                 kalman_measurement_noise=1.0))
    [zone] = p.zones
    assert zone.flaps_per_hour > 2
    assert any("zone changes per hour" in w for w in p.warnings)
