"""drivers.wifi_pcap and drivers.pcap_records over real captures, against scapy's readers."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from scapy.utils import PcapNgWriter, PcapWriter

from presence_gateway.core.model import Radio
from presence_gateway.drivers.pcap_records import iter_records, read_scapy
from presence_gateway.drivers.wifi_pcap import WifiPcapDriver, iter_pcap
from presence_gateway.errors import DriverError
from tests.sinks import ListSink

DATA = Path(__file__).resolve().parents[1] / "data"
WIFI = DATA / "wifi"
BRNO = WIFI / "position_1_sc6-61_2023-04-17_anonymized.pcap"
EXTHDR = WIFI / "ieee802.11_exthdr.pcap"



async def test_replays_the_brno_capture_in_batches() -> None:
    sink = ListSink()
    driver = WifiPcapDriver("wifi0", [str(BRNO)], sensor="lab", batch=100)
    await driver.run(sink)
    assert len(sink.items) == 511 == driver.delivered
    assert sink.batches == [100] * 5 + [11]
    first = sink.items[0]
    assert (first.radio, first.kind, first.rssi, first.seq, first.sensor) == (
        Radio.WIFI, "probe_request", -82, 1801, "lab")
    # CSV 2023-04-17 00:01:53.104135 local (CEST, UTC+2) = 2023-04-16 22:01:53.104135 UTC
    assert first.ts == pytest.approx(1681682513.104135, abs=1e-6)
    assert [s.ts for s in sink.items] == sorted(s.ts for s in sink.items)


async def test_rejections_and_ignored_frames_are_counted() -> None:
    sink = ListSink()
    paths = [str(EXTHDR), str(WIFI / "radiotap-heapoverflow.pcap"),
             str(WIFI / "ieee802.11_rates_oobr.pcap")]
    driver = WifiPcapDriver("wifi0", paths)
    await driver.run(sink)
    assert sink.rejected == Counter({"bad_radiotap_version": 2}) == driver.rejections
    kinds = Counter(s.kind for s in sink.items)
    assert kinds == Counter({"probe_request": 6, "null_data": 2, "association_request": 1})
    assert driver.ignored == 26 - 9


async def test_scapy_reader_gives_the_same_sightings() -> None:
    native, scapy = ListSink(), ListSink()
    await WifiPcapDriver("a", [str(BRNO)]).run(native)
    await WifiPcapDriver("b", [str(BRNO)], reader="scapy").run(scapy)
    assert native.items == scapy.items


@pytest.mark.parametrize("path", sorted(WIFI.glob("*.pcap")) + sorted(DATA.glob("*/*.pcapng")),
                         ids=lambda p: p.name)
def test_native_reader_matches_scapy(path: Path) -> None:
    assert list(iter_records(path)) == list(read_scapy(path))


def test_pcapng_nanosecond_and_big_endian(tmp_path: Path) -> None:
    records = list(iter_records(EXTHDR))
    ng = tmp_path / "exthdr.pcapng"
    writer = PcapNgWriter(str(ng))
    writer.linktype = 127
    writer.write_header(None)
    for ts, _, data in records:
        writer.write_packet(data, sec=ts)
    writer.close()
    got = list(iter_pcap(ng))
    assert [d for _, _, d in got] == [d for _, _, d in records]
    assert [lt for _, lt, _ in got] == [127] * len(records)
    assert got[0][0] == pytest.approx(records[0][0], abs=1e-6)
    assert got == list(read_scapy(ng))

    nano = tmp_path / "nano_be.pcap"
    sec, ns = 1700000000, 123456789
    data = records[0][2]
    nano.write_bytes(struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 127)
                     + struct.pack(">IIII", sec, ns, len(data), len(data)) + data)
    [(ts, linktype, raw)] = list(iter_pcap(nano))
    assert (ts, linktype, raw) == (sec + ns / 1e9, 127, data)


def test_pcap_writer_roundtrip_keeps_the_fcs_linktype(tmp_path: Path) -> None:
    out = tmp_path / "fcs.pcap"
    writer = PcapWriter(str(out), linktype=0x3000007F, sync=True)
    writer.write_header(None)
    writer.write_packet(b"\x00" * 8, sec=1, usec=5)
    writer.close()
    assert list(iter_pcap(out)) == [(1.000005, 0x3000007F, b"\x00" * 8)]


@pytest.mark.parametrize("content", [b"", b"hello world, not a capture", b"\xd4\xc3\xb2\xa1"])
async def test_unreadable_files(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    with pytest.raises(DriverError) as err:
        await WifiPcapDriver("wifi0", [str(bad)]).run(ListSink())
    assert (err.value.driver, err.value.reason) == ("wifi0", "capture_unreadable")


async def test_missing_file() -> None:
    with pytest.raises(DriverError) as err:
        await WifiPcapDriver("wifi0", ["/nonexistent/x.pcap"]).run(ListSink())
    assert err.value.reason == "capture_unreadable" and "No such file" in err.value.detail


async def test_truncated_file_delivers_what_precedes_the_damage(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(BRNO.read_bytes()[:-50])
    sink = ListSink()
    with pytest.raises(DriverError) as err:
        await WifiPcapDriver("wifi0", [str(cut)]).run(sink)
    assert err.value.reason == "capture_unreadable" and "byte" in err.value.detail
    assert len(sink.items) == 510
