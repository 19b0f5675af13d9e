"""JSONL recording replay: sightings in file order with capture time, bad lines counted."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from presence_gateway.cli.main import main as cli
from presence_gateway.core.model import AddressKind
from presence_gateway.drivers.ble_replay import BleReplayDriver
from presence_gateway.errors import DriverError
from tests.sinks import ListSink

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
