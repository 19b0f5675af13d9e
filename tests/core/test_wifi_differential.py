"""Differential test: our 802.11 parser against scapy's dissectors, frame by frame.

Every frame of every Wi-Fi capture (bundled BSD/MIT files, and ../shared when present) must give
the same kind, address, RSSI, frequency, channel, sequence number, SSID, element ids and vendor
OUIs as scapy, or be refused where scapy refuses or cannot dissect it.

scapy needs ~1.3 ms per frame, so a capture larger than FRAME_BUDGET frames is compared on evenly
spaced frames (every frame of the Brno days is still checked against its CSV in
test_wifi_parser.py); WIFI_DIFF_FULL=1 compares every frame of every file (about a minute).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from presence_gateway.core.wifi.frames import parse_record
from tests.core.wifi_oracle import BUNDLED, REJECT, SHARED_WIFI, our_fields, records, scapy_fields

FRAME_BUDGET = 3000


def _captures() -> list[Path]:
    found = sorted(BUNDLED.glob("*.pcap"))
    if SHARED_WIFI.is_dir():
        found += sorted(SHARED_WIFI.glob("**/*.pcap"))
    return found


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_every_frame_matches_scapy(path: Path) -> None:
    relevant = 0
    frames = list(records(path))
    stride = 1 if os.environ.get("WIFI_DIFF_FULL") else -(-len(frames) // FRAME_BUDGET)
    for index in range(0, len(frames), stride):
        data, linktype = frames[index]
        expected = scapy_fields(data, linktype)
        got = our_fields(parse_record(data, linktype, 0.0))
        assert got == expected, f"{path.name} frame {index}"
        relevant += isinstance(expected, dict)
    if "heapoverflow" not in path.name and "oobr" not in path.name:
        assert relevant > 0, "a capture with no client frame would make this test vacuous"


def test_shared_captures_present_or_skipped() -> None:
    if not SHARED_WIFI.is_dir():
        pytest.skip(f"{SHARED_WIFI} absent: only bundled captures were compared")
    assert len(list(SHARED_WIFI.glob("**/*.pcap"))) >= 14


def test_exthdr_regression_reads_the_first_namespace() -> None:
    """tcpdump's reference output for ieee802.11_exthdr: probe requests at 2412 MHz with
    -22/-19/-61/-70/-67/-72 dBm; a parser ignoring the extended bitmap reads other values."""
    rssi = []
    for data, linktype in records(BUNDLED / "ieee802.11_exthdr.pcap"):
        got = our_fields(parse_record(data, linktype, 0.0))
        if isinstance(got, dict) and got["kind"] == "probe_request":
            assert (got["freq"], got["channel"], got["ssid"]) == (2412, 1, b"omus")
            assert got["address"] == "90:a4:de:c0:46:11"
            rssi.append(got["rssi"])
    assert rssi == [-22, -19, -61, -70, -67, -72]


def test_fuzzer_files_are_refused() -> None:
    for name in ("ieee802.11_rates_oobr.pcap", "radiotap-heapoverflow.pcap"):
        for data, linktype in records(BUNDLED / name):
            assert linktype == 0x3000007F
            assert our_fields(parse_record(data, linktype, 0.0)) == REJECT
