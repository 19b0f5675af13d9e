"""`presence-gateway replay` of a hopping radio's capture says what the radio was read as.

scapy writes a capture as a hopper over channels 1, 6 and 11, 100 ms on each, makes one: every
probe request tagged (radiotap channel) with the channel the radio is on when it arrives,
from a crowd of phones. The command is told nothing about the radio; its summary names the
plan the count corrected for: the channels from the tags and the dwell from how often
consecutive frames change channel (core/presence/dwell.py).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from scapy.layers.dot11 import Dot11, Dot11Elt, Dot11ProbeReq, RadioTap
from scapy.utils import wrpcap

from presence_gateway.cli.main import main

PLAN, DWELL_S = (1, 6, 11), 0.1


def hopping_capture(path: Path, seconds: float = 120.0) -> None:
    draw = random.Random(7)
    frames, t = [], 1_700_000_000.0
    end = t + seconds
    while t < end:
        t += draw.expovariate(40.0)  # a frame every 25 ms on average
        channel = PLAN[int(t / DWELL_S) % len(PLAN)]
        mac = f"02:00:00:00:00:{draw.randrange(40):02x}"
        frame = (RadioTap(present="Channel+dBm_AntSignal", ChannelFrequency=2407 + 5 * channel,
                          dBm_AntSignal=-55 - draw.randrange(20))
                 / Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=mac,
                         addr3="ff:ff:ff:ff:ff:ff")
                 / Dot11ProbeReq() / Dot11Elt(ID=0, info=b"")
                 / Dot11Elt(ID=1, info=b"\x02\x04\x0b\x16")
                 / Dot11Elt(ID=3, info=bytes([channel])))
        frame.time = t
        frames.append(frame)
    wrpcap(str(path), frames, linktype=127)


def test_a_replayed_hopping_capture_reports_the_plan_it_was_counted_with(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "hopper.pcap"
    hopping_capture(pcap, seconds=60.0)  # 2,400 frames: the dwell settles within them
    assert main(["replay", str(pcap), "--no-mqtt", "--db", str(tmp_path / "gw.db")]) == 0
    err = capsys.readouterr().err
    line = next((x for x in err.splitlines() if "wifi plan" in x), "")
    assert "read from the frames" in line and "channels 1,6,11" in line, err
    got = re.search(r"dwell (\d+) ms", line)
    assert got is not None and 70 <= int(got.group(1)) <= 130, line
    assert "phone sweeps caught 0." in line  # below 1: the timing misses some sweeps


def test_a_fixed_channel_replay_reports_no_plan(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = Path(__file__).resolve().parents[1] / "gateway" / "data" / "demo" \
        / "wifi_tcpdump_exthdr.pcap"
    assert main(["replay", str(pcap), "--no-mqtt", "--db", str(tmp_path / "gw.db")]) == 0
    assert "wifi plan" not in capsys.readouterr().err


BRNO = Path(__file__).resolve().parents[2] / "shared" / "data" / "captures" / "wifi" \
    / "brno_sc6-61" / "position_1_sc6-61_2023-02-16_anonymized.pcap"


@pytest.mark.skipif(not BRNO.is_file(), reason="../shared Brno captures absent")
@pytest.mark.parametrize("shift", [0, 6])
def test_a_replayed_class_day_reports_the_sensors_placement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], shift: int) -> None:
    # The real 02-16 class day as recorded, and as a sensor 6 dB hotter would have heard it
    # (scapy rewrites each frame's radiotap dBm_AntSignal): the summary says which offset the
    # count used, learnt from the readings (docs/presence.md "Placement").
    from scapy.utils import rdpcap
    pcap = BRNO
    if shift:
        frames = rdpcap(str(BRNO), count=3000)  # the first ~40 min: several busy windows
        for f in frames:
            f[RadioTap].dBm_AntSignal += shift
        pcap = tmp_path / "hot.pcap"
        wrpcap(str(pcap), frames, linktype=127)
    assert main(["replay", str(pcap), "--no-mqtt", "--db", str(tmp_path / "gw.db")]) == 0
    err = capsys.readouterr().err
    line = next((x for x in err.splitlines() if "wifi placement" in x), "")
    assert "learnt from its readings" in line, err
    got = re.search(r"offset ([+-]\d+|0) dB", line)
    assert got is not None, line
    # As recorded it is the reference spot (inside the 3 dB dead band: 0). Hot by 6 dB it
    # learns -8 (docs/presence.md: this day's p90 sits 2 dB above the reference, which the
    # dead band hid): within the dead band of -shift.
    assert int(got.group(1)) == 0 if not shift else -shift - 3 <= int(got.group(1)) <= -shift + 3


def test_an_empty_day_leaves_the_sensor_cautious_and_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The bundled empty Brno day (04-17, 511 frames of fixed lab devices): nothing in it looks
    # like an occupied store, so the sensor's scale stays unknown and the summary says the
    # count is cautious meanwhile.
    pcap = Path(__file__).resolve().parents[1] / "gateway" / "data" / "demo" \
        / "wifi_brno_2023-04-17.pcap"
    assert main(["replay", str(pcap), "--no-mqtt", "--db", str(tmp_path / "gw.db")]) == 0
    err = capsys.readouterr().err
    line = next((x for x in err.splitlines() if "wifi placement" in x), "")
    assert "not learnt yet" in line and "walk_in.min_time only" in line, err
