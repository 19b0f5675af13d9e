"""`presence-gateway decode ble`: JSON lines of adverts in, one JSON line of decoding out.

Input, one JSON object per line:
    {"ad": "<hex>"}                                   raw AD structures as on air
    {"ad": ["<adv hex>", "<scan response hex>"]}      advertising data + scan response
    a line of the JSONL BLE recording format           (core/ble/record.py)
Output, one line per non-blank input line, in order:
    {"advertisement": {local_name, service_uuids, service_data, manufacturer_data, tx_power},
     "sightings": [{"kind": ..., <fields>}], "rejected": null | "<reason>"}

Invariants:
- Never a traceback for any input: bad JSON, bad hex or broken AD structures give a `rejected`
  reason (with `advertisement: null, sightings: []`), and the exit status is 0.
- The advertisement follows bleak's conventions (128-bit UUID strings, company ids as decimal
  strings, payload hex without the company id). Addresses are never echoed.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import orjson

from presence_gateway.cli.common import Subparsers
from presence_gateway.core.ble.decode import Advert, decode, parse_ad
from presence_gateway.core.ble.record import parse_recording_line
from presence_gateway.core.model import Rejection


def register(sub: Subparsers) -> None:
    p = sub.add_parser("decode", help="decode adverts from JSON lines on stdin",
                       description="Decode BLE adverts: JSON lines on stdin, one JSON line of"
                                   " decoding per input line on stdout.")
    p.add_argument("what", choices=["ble"])
    p.set_defaults(func=lambda args: run_decode_ble(sys.stdin, sys.stdout))


def advert_json(advert: Advert) -> dict[str, Any]:
    return {
        "local_name": advert.local_name,
        "service_uuids": list(advert.service_uuids),
        "service_data": {k: v.hex() for k, v in advert.service_data.items()},
        "manufacturer_data": {str(k): v.hex() for k, v in advert.manufacturer_data.items()},
        "tx_power": advert.tx_power,
    }


def _rejected(reason: str) -> dict[str, Any]:
    return {"advertisement": None, "sightings": [], "rejected": reason}


def _from_ad(ad: Any) -> Advert | str:
    parts = [ad] if isinstance(ad, str) else ad
    if not isinstance(parts, list) or not 1 <= len(parts) <= 2:
        return "ad_not_hex_or_pair"
    if not all(isinstance(p, str) for p in parts):
        return "ad_not_hex_or_pair"
    try:
        raw = [bytes.fromhex(p) for p in parts]
    except ValueError:
        return "ad_bad_hex"
    result = parse_ad(raw[0], raw[1] if len(raw) > 1 else b"")
    return result.reason if isinstance(result, Rejection) else result


def decode_line(line: str) -> dict[str, Any]:
    """One input line -> the output object (never raises)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _rejected("bad_json")
    if not isinstance(obj, dict):
        return _rejected("not_an_object")
    if "ad" in obj:
        found = _from_ad(obj["ad"])
    else:
        record = parse_recording_line(line)
        found = record.reason if isinstance(record, Rejection) else record[4]
    if isinstance(found, str):
        return _rejected(found)
    return {
        "advertisement": advert_json(found),
        "sightings": [{"kind": d.kind, **d.fields} for d in decode(found)],
        "rejected": None,
    }


def run_decode_ble(stdin: TextIO, stdout: TextIO) -> int:
    """Decode every line of `stdin` to `stdout`; always 0 (rejections are in the output)."""
    for line in stdin:
        if not line.strip():
            continue
        stdout.write(orjson.dumps(decode_line(line)).decode())
        stdout.write("\n")
    stdout.flush()
    return 0

