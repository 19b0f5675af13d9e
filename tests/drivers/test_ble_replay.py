"""JSONL recording replay: sightings in file order with capture time, bad lines counted."""

from __future__ import annotations

import gzip
import io
import json
import random
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from presence_gateway.cli.main import main as cli
from presence_gateway.core.ble.decode import parse_ad
from presence_gateway.core.ble.record import format_recording_line
from presence_gateway.core.model import AddressKind, Rejection
from presence_gateway.drivers.ble_pcap import iter_capture
from presence_gateway.drivers.ble_replay import (
    MAX_LINE,
    BleReplayDriver,
    RecordingReader,
    line_sightings,
)
from presence_gateway.errors import DriverError
from tests.fuzzing import budget
from tests.sinks import ListSink

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "captures" / "ble"
LOCAL = Path(__file__).resolve().parents[1] / "data" / "ble_air"

IBEACON = ('{"ts": 100.5, "address": "c0:de:00:00:00:01", "address_type": "random", "rssi": -60,'
           ' "manufacturer_data": {"76": "02154142434445464748494041424344454600010002c5"},'
           ' "channel": 37}')


async def test_replay_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["app-token", "--secret", "11" * 16, "--uuid",
                "2f234454cf6d4a0fadf2f4911ba9ffa6", "--at", "200"]) == 0
    token_line = capsys.readouterr().out.split("jsonl ", 1)[1].strip()
    rec = tmp_path / "r.jsonl"
    rec.write_text("\n".join([
        "# recorded by a test", IBEACON, "", "{not json", '{"ts": 1}', token_line,
        '{"ts": 300, "address": "00:11:22:33:44:55", "address_type": "public"}',
    ]) + "\n")
    sink = ListSink()
    drv = BleReplayDriver("rec", [str(rec)], sensor="door")
    await drv.run(sink)
    assert sink.rejections == {"record_bad_json": 1, "record_bad_address": 1}
    assert (drv.lines, drv.rejected) == (5, 2)
    first = sink.sightings[0]
    assert (first.ts, first.kind, first.rssi, first.channel, first.sensor) == (
        100.5, "ibeacon", -60, 37, "door")
    assert first.address == bytes.fromhex("c0de00000001")
    assert first.address_kind == AddressKind.STATIC
    assert first.fields["uuid"] == "41424344-4546-4748-4940-414243444546"
    assert (first.fields["major"], first.fields["minor"]) == (1, 2)
    token = sink.sightings[1]
    assert token.kind == "ibeacon" and token.ts == 200.0
    assert token.fields["uuid"] == "2f234454-cf6d-4a0f-adf2-f4911ba9ffa6"
    last = sink.sightings[-1]
    assert (last.ts, last.kind, last.address_kind) == (300.0, "advert", AddressKind.PUBLIC)


async def test_replay_gzip_and_errors(tmp_path: Path) -> None:
    gz = tmp_path / "r.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write((IBEACON + "\n") * 1500)  # more than one batch
    sink = ListSink()
    await BleReplayDriver("rec", [str(gz)]).run(sink)
    assert len(sink.sightings) == 1500
    with pytest.raises(DriverError) as err:
        await BleReplayDriver("rec", [str(tmp_path / "missing.jsonl")]).run(ListSink())
    assert err.value.reason == "capture_unreadable"
    bad_gz = tmp_path / "bad.jsonl.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DriverError):
        await BleReplayDriver("rec", [str(bad_gz)]).run(ListSink())


# -- hostile and damaged recordings (issue 12) ---------------------------------------------

HOSTILE = [  # (line, the rejection it must count)
    (b'{"ts": 5, "address": "00:11:22:33:44:55", "address_type": []}', "record_bad_address_type"),
    (b'{"ts": 5, "address": "00:11:22:33:44:55", "address_type": {"a": 1}}',
     "record_bad_address_type"),
    (b'{"ts": 5, "address": "00:11:22:33:44:55", "manufacturer_data": {"\\u00b2": "00"}}',
     "record_bad_manufacturer_data"),
    (b'{"ts": 123456789012345678901234567890, "address": "00:11:22:33:44:55"}', "record_bad_ts"),
    (b'{"ts": 1e400, "address": "00:11:22:33:44:55"}', "record_bad_json"),
    (b'{"ts": 5, "address": "00:11:22:33:44:55", "rssi": 99999999999999999999999}',
     "record_bad_rssi"),
    (b'{"ts": 5}', "record_bad_address"),
    (b'{"address": "00:11:22:33:44:55"}', "record_bad_ts"),
    (b'[1, 2, 3]', "record_not_object"),
    (b'"just a string"', "record_not_object"),
    (b"\xff\xfe\x00garbage", "record_bad_json"),
    (b"{" * 5000, "record_bad_json"),
    (b'{"ts": 1, "address": "' + b"a" * (MAX_LINE + 10) + b'"}', "record_too_long"),
]


async def test_bad_lines_are_counted_and_the_replay_goes_on(tmp_path: Path) -> None:
    """2,400 adverts with a hostile line after the 1,024th (where the replay used to end with a
    TypeError) and every other kind of bad line spread through: all adverts arrive."""
    good = [IBEACON.replace("100.5", str(100 + i)) for i in range(2400)]
    lines: list[bytes] = [g.encode() for g in good[:1024]]
    for i, (bad, _) in enumerate(HOSTILE):
        lines.append(bad)
        lines.extend(g.encode() for g in good[1024 + i * 100:1024 + (i + 1) * 100])
    lines.extend(g.encode() for g in good[1024 + len(HOSTILE) * 100:])
    rec = tmp_path / "hostile.jsonl"
    rec.write_bytes(b"\n".join(lines) + b"\n")
    sink = ListSink()
    drv = BleReplayDriver("rec", [str(rec)])
    await drv.run(sink)
    assert len(sink.sightings) == 2400
    want: dict[str, int] = {}
    for _, reason in HOSTILE:
        want[reason] = want.get(reason, 0) + 1
    assert sink.rejections == want == drv.rejections
    assert (drv.lines, drv.rejected) == (2400 + len(HOSTILE), len(HOSTILE))


@cache
def real_lines() -> tuple[bytes, ...]:
    """Recording lines made from real captures (the shared BLE pcaps and btsnoop log when
    ../shared is present, the repository's copies otherwise): what the recorder would write."""
    names = ["ice9_hackrf_boston/take_2__ble_all_adv.pcap", "nrf_sniffer/odid_bt5_lr_sample.pcapng",
             "btsnoop/btsnoop_hci20241230_1.log"]
    paths = [SHARED / n for n in names if (SHARED / n).exists()] or sorted(LOCAL.glob("*.pcap*"))
    out: list[bytes] = []
    for path in paths:
        for rec in iter_capture(str(path)):
            if rec is None or isinstance(rec, Rejection):
                continue
            advert = parse_ad(rec.data)
            if not isinstance(advert, Rejection):
                out.append(format_recording_line(rec.ts, rec.address, rec.address_type,
                                                 rec.rssi, advert, rec.channel).encode())
    assert len(out) > 100
    return tuple(dict.fromkeys(out))


FIELDS = ["ts", "address", "address_type", "rssi", "manufacturer_data", "service_data",
          "service_uuids", "local_name", "tx_power", "channel"]
_keys = st.sampled_from([*FIELDS, "76", "feaa", "\u00b2", "\u0660\u0660\u0660\u0660",
                         "0000feaa-0000-1000-8000-00805f9b34fb"]) | st.text(max_size=8)
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(2**63, 2**200)
            | st.integers(-(2**200), -(2**63)) | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=12) | st.sampled_from(["random", "public", "0215", "zz", ""]))
_json = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(_keys, kids, max_size=4), max_leaves=10)


@st.composite
def _field_mutant(draw: st.DrawFn) -> bytes:
    """A real line with fields replaced by random JSON values, or removed."""
    d: dict[str, Any] = json.loads(draw(st.sampled_from(real_lines())))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(FIELDS) | _keys)
        if draw(st.booleans()):
            d.pop(key, None)
        else:
            d[key] = draw(_json)
    return json.dumps(d).encode()


@st.composite
def _byte_mutant(draw: st.DrawFn) -> bytes:
    """A real line with a few bytes flipped, inserted or cut (a damaged disk, a bad edit)."""
    line = bytearray(draw(st.sampled_from(real_lines())))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(line) - 1))
        op = draw(st.sampled_from(["flip", "insert", "cut"]))
        if op == "flip":
            line[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            line[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del line[i:]
            break
    return bytes(line)


_hostile_line = (_field_mutant() | _byte_mutant() | _json.map(lambda v: json.dumps(v).encode())
                 | st.binary(max_size=80))


@budget(300)
@given(st.lists(_hostile_line, min_size=1, max_size=5))
def test_fuzz_reader_never_raises(lines: list[bytes]) -> None:
    """Mutated real lines and random JSON, read as one file: every line is sightings or one
    rejection, and the reader never raises."""
    good = real_lines()[0]
    data = b"\n".join([good, *lines, good]) + b"\n"
    reader = RecordingReader(io.BytesIO(data))
    results = [item if isinstance(item, Rejection) else line_sightings(item)
               for item in reader]
    assert all(isinstance(r, Rejection | list) for r in results)
    assert not isinstance(results[0], Rejection) and not isinstance(results[-1], Rejection)


def _varied_lines(n: int) -> bytes:
    """n iBeacon lines with varied payloads (repetitive text compresses to nothing useful)."""
    rng = random.Random(7)
    return b"".join(
        b'{"ts": %d, "address": "c0:de:00:00:00:01", "manufacturer_data": {"76": "0215%s"}}\n'
        % (i, rng.randbytes(21).hex().encode()) for i in range(n))


async def test_corrupt_gzip_is_a_driver_error_after_the_good_lines(tmp_path: Path) -> None:
    # A valid deflate stream of 1,500 lines, then a block of the reserved type 3: zlib.error.
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(_varied_lines(1500)) + c.flush(zlib.Z_FULL_FLUSH)
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + body + b"\x07" + b"\0" * 64)
    sink = ListSink()
    drv = BleReplayDriver("rec", [str(corrupt)])
    with pytest.raises(DriverError) as err:
        await drv.run(sink)
    assert err.value.reason == "capture_unreadable"
    assert str(corrupt) in err.value.detail and "invalid block type" in err.value.detail
    assert 0 < drv.lines < 1500
    read = b"".join(_varied_lines(1500).splitlines(keepends=True)[:drv.lines])
    assert f"damaged at decompressed byte {len(read)} (after line {drv.lines})" in \
        err.value.detail
    assert len(sink.sightings) == drv.lines  # every line read before the damage was delivered


async def test_truncated_gzip_delivers_what_precedes_the_cut(tmp_path: Path) -> None:
    whole = gzip.compress(_varied_lines(1500), mtime=0)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    sink = ListSink()
    drv = BleReplayDriver("rec", [str(cut)])
    with pytest.raises(DriverError) as err:
        await drv.run(sink)
    assert err.value.reason == "capture_unreadable"
    assert f"{cut}: damaged at decompressed byte " in err.value.detail
    assert f"(after line {drv.lines})" in err.value.detail
    assert 500 < drv.lines < 1500 and len(sink.sightings) == drv.lines
