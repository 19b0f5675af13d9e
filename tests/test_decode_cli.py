"""`decode ble`: the function on StringIO, and the real module entry point in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from presence_gateway.cli.decode import run_decode_ble

REPO = Path(__file__).resolve().parents[1]
GAP = json.loads(
    (REPO / "tests" / "data" / "ble" / "bluetooth_data_tools_gap_vectors.json").read_text()
)["vectors"]

IBEACON = "0201061aff4c0002154142434445464748494041424344454600010002f8"
LINES = [
    json.dumps({"ad": IBEACON}),
    json.dumps({"ad": GAP[1]["ad_payloads_hex"]}),  # Prodigio: adv + scan response
    "not json",
    json.dumps({"ad": "0g"}),
    json.dumps({"ad": "1aff4c00"}),  # length runs past the data
    json.dumps({"ad": [1, 2]}),
    "",
    json.dumps(
        {
            "ts": 1.5,
            "address": "c0:11:22:33:44:55",
            "address_type": "random",
            "rssi": -60,
            "manufacturer_data": {"6": "01092002ac6d90ec0132b3204cd39c7ced3e48436ba15dc6314778"},
            "service_data": {"fd6f": "e7c6d34c71e48baf278bd99be74685bca78126ab"},
        }
    ),
    json.dumps({"ts": "yesterday"}),
]


def _check(outputs: list[dict[str, Any]]) -> None:
    assert len(outputs) == len([line for line in LINES if line])
    ibeacon, prodigio, bad_json, bad_hex, overrun, bad_ad, record, bad_record = outputs
    assert ibeacon["rejected"] is None
    assert ibeacon["sightings"] == [
        {
            "kind": "ibeacon",
            "uuid": "41424344-4546-4748-4940-414243444546",
            "major": 1,
            "minor": 2,
            "power": -8,
        }
    ]
    assert prodigio["advertisement"] == GAP[1]["expected"]
    assert [o["rejected"] for o in (bad_json, bad_hex, overrun, bad_ad)] == [
        "bad_json",
        "ad_bad_hex",
        "ad_overrun",
        "ad_not_hex_or_pair",
    ]
    assert bad_hex["advertisement"] is None and bad_hex["sightings"] == []
    assert record["rejected"] is None
    assert [s["kind"] for s in record["sightings"]] == [
        "exposure_notification",
        "microsoft_cdp",
    ]
    assert "c0:11" not in json.dumps(record)  # addresses are never echoed
    assert isinstance(bad_record["rejected"], str)


def test_run_decode_ble_on_stringio() -> None:
    out = io.StringIO()
    assert run_decode_ble(io.StringIO("\n".join(LINES) + "\n"), out) == 0
    _check([json.loads(line) for line in out.getvalue().splitlines()])


def test_module_entry_point() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "presence_gateway", "decode", "ble"],
        input="\n".join(LINES) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _check([json.loads(line) for line in proc.stdout.splitlines()])
