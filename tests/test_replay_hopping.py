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
    hopping_capture(pcap)
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
