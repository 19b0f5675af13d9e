"""Damaged BLE air captures (cut pcap, pcapng and btsnoop files, overwritten bytes, short blocks,
an unsupported datalink): the replay keeps what came before, names the byte offset and raises
nothing but DriverError (the CLI exits 1)."""

from __future__ import annotations

import asyncio
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.core.ble.air import AirAdvert, iter_btsnoop_reports
from presence_gateway.core.model import Radio, Rejection
from presence_gateway.drivers.ble_pcap import BlePcapDriver, iter_capture, sightings_from_air
from presence_gateway.drivers.pcap_records import PcapError, iter_records
from presence_gateway.errors import DriverError
from tests.drivers.test_ble_pcap import BTSNOOP, DATA
from tests.fuzzing import budget
from tests.sinks import ListSink


def _complete_pcap_records(data: bytes) -> tuple[int, int]:
    """(complete records, offset where the first incomplete one starts) of a LE pcap."""
    off, n = 24, 0
    while off + 16 <= len(data):
        end = off + 16 + int.from_bytes(data[off + 8:off + 12], "little")
        if end > len(data):
            break
        off, n = end, n + 1
    return n, off


async def _replay_damaged(path: Path) -> tuple[BlePcapDriver, ListSink, DriverError]:
    drv, sink = BlePcapDriver("air", [str(path)]), ListSink()
    with pytest.raises(DriverError) as err:
        await drv.run(sink)
    assert err.value.reason == "capture_unreadable" and str(path) in err.value.detail
    return drv, sink, err.value


def _sightings_of(recs: list[AirAdvert | Rejection | None]) -> int:
    out = [sightings_from_air(r) for r in recs if isinstance(r, AirAdvert)]
    return sum(len(s) for s in out if not isinstance(s, Rejection))


async def test_truncated_pcap_says_where_and_keeps_what_came_before(tmp_path: Path) -> None:
    """A capture cut mid-record (a sniffer killed, a partial copy) used to end silently; now it
    is reported with the byte offset, as the Wi-Fi replay does, after the records before it."""
    data = (DATA / "short_ble_sniff.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:5000])
    complete, at = _complete_pcap_records(data[:5000])
    drv, sink, err = await _replay_damaged(cut)
    assert f"truncated or corrupt pcap record at byte {at}" in err.detail
    assert drv.adverts + drv.skipped + sum(drv.rejections.values()) == complete
    before = list(iter_capture(str(DATA / "short_ble_sniff.pcap")))[:complete]
    assert len(sink.sightings) == _sightings_of(before) > 0


async def test_truncated_pcapng_says_where(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes((DATA / "odid_bt5_lr_sample.pcapng").read_bytes()[:50_000])
    drv, sink, err = await _replay_damaged(cut)
    assert "truncated or corrupt pcapng block at byte " in err.detail
    assert drv.adverts > 100 and len(sink.sightings) >= drv.adverts


@pytest.mark.skipif(not BTSNOOP.exists(), reason="AGPL btsnoop log lives only in ../shared")
async def test_truncated_btsnoop_says_where(tmp_path: Path) -> None:
    data = BTSNOOP.read_bytes()
    cut = tmp_path / "cut.log"
    cut.write_bytes(data[:40_000])
    drv, sink, err = await _replay_damaged(cut)
    assert "truncated or corrupt btsnoop record at byte " in err.detail
    at = int(err.detail.rsplit(" ", 1)[1])
    assert 16 < at <= 40_000
    before = list(iter_btsnoop_reports(data[:at]))  # the complete records: a clean file
    assert before and not any(isinstance(r, Rejection) for r in before)
    assert drv.adverts == len(before) and len(sink.sightings) == _sightings_of([*before])
    # The pure walk ends a cut file with one counted reason instead of an offset.
    tail = list(iter_btsnoop_reports(data[:40_000]))
    assert tail[-1] == Rejection(Radio.BLE, "btsnoop_truncated") and tail[:-1] == before


async def test_unsupported_btsnoop_datalink_is_an_error(tmp_path: Path) -> None:
    btmon = tmp_path / "btmon.log"  # BlueZ btmon -w writes datalink 2001 (monitor), not H4
    btmon.write_bytes(b"btsnoop\0\0\0\0\x01\0\0\x07\xd1" + b"\0" * 40)
    _, _, err = await _replay_damaged(btmon)
    assert "btsnoop_unsupported_datalink" in err.detail


_REAL = [DATA / "short_ble_sniff.pcap", DATA / "odid_bt5_lr_sample.pcapng", BTSNOOP]


@budget(60)
@given(st.sampled_from([p for p in _REAL if p.exists()]), st.data())
def test_fuzz_damaged_captures_only_driver_errors(path: Path, data: st.DataObject) -> None:
    """Real captures cut anywhere and with bytes overwritten: the replay ends normally or with
    DriverError(capture_unreadable), never another exception (a traceback for the installer)."""
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(raw) - 4))
        raw[at:at + 4] = data.draw(st.binary(min_size=4, max_size=4))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    with tempfile.NamedTemporaryFile(suffix=path.suffix) as f:
        f.write(raw)
        f.flush()
        try:
            asyncio.run(BlePcapDriver("air", [f.name]).run(ListSink()))
        except DriverError as err:
            assert err.reason == "capture_unreadable"


@pytest.mark.parametrize("btype", [6, 2, 3])
def test_pcapng_packet_block_shorter_than_its_fields(tmp_path: Path, btype: int) -> None:
    """A packet block whose total length cannot hold its fixed fields is damage at its offset
    (it used to escape as struct.error, or yield a packet made of the next block's bytes)."""
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    idb = struct.pack("<IIHHII", 1, 20, 272, 0, 0, 20)
    short = struct.pack("<III", btype, 12, 12)
    for tail in (b"", b"\0" * 40):
        f = tmp_path / "short.pcapng"
        f.write_bytes(shb + idb + short + tail)
        with pytest.raises(PcapError, match="at byte 48"):
            list(iter_records(f))


def test_replay_of_a_cut_capture_processes_what_it_read_and_exits_1(tmp_path: Path) -> None:
    """The CLI end: the records before the cut become observations, the damage is named in
    the summary, and the exit status says the recording was not read whole."""
    import subprocess
    import sys

    whole = (Path(__file__).resolve().parents[1] / "data" / "ble_air"
             / "take_2__ble_all_adv.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    res = subprocess.run([sys.executable, "-m", "presence_gateway", "replay", str(cut),
                          "--no-mqtt", "--db", str(tmp_path / "g.db")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    import re
    assert re.search(r"cut\.pcap: truncated .* at byte \d+", res.stderr), res.stderr
    observations = int(res.stderr.split("observations: ", 1)[1].split()[0])
    assert observations > 0
    assert "Traceback" not in res.stderr
