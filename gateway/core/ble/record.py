"""The JSONL BLE recording format: one advert per line (docs/ble_recording.md is normative).

```
{"ts": 1767225600.25, "address": "aa:bb:cc:dd:ee:ff", "address_type": "random", "rssi": -61,
 "manufacturer_data": {"76": "0215..."}, "service_data": {"feaa": "00e7..."},
 "service_uuids": ["0000fe9f-0000-1000-8000-00805f9b34fb"], "local_name": null,
 "tx_power": null, "channel": 37}
```

Invariants:
- `parse_recording_line` never raises on any input: it returns the parsed tuple or a
  `Rejection(Radio.BLE, "record_<what>")` naming the first bad field. Every field is type-checked
  before it is used (a list where a string belongs is a rejection, not a TypeError), numbers are
  range-checked (`ts` within MAX_TS, so no later datetime overflows) and only ASCII digits and hex
  are accepted ("²".isdigit() is true, int("²") is not).
- Only `ts` and `address` are required; every other key may be missing (empty / None), and
  unknown keys are ignored so the format can grow. A missing `address_type` is "unknown".
- Company ids are decimal strings (bleak's dict keys as JSON); payloads are hex without the
  company id; service-data and service-uuid keys may be 16-bit ("feaa"), 32-bit or 128-bit and
  are normalised to bleak's 128-bit lowercase strings.
- `format_recording_line` is the inverse for what the recorder writes: parse(format(x)) == x.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from presence_gateway.core.ble.types import Advert, uuid16, uuid32
from presence_gateway.core.model import Radio, Rejection
from presence_gateway.core.privacy import format_mac, parse_mac

RecordedAdvert = tuple[float, bytes, str, int | None, Advert, int | None]
ADDRESS_TYPES = frozenset({"public", "random", "unknown"})
MAX_TS = 4_102_444_800.0  # 2100-01-01 UTC: beyond any capture, far inside datetime's range
_HEX = frozenset("0123456789abcdefABCDEF")
_REJECT: dict[str, Rejection] = {}


def _rej(what: str) -> Rejection:
    r = _REJECT.get(what)
    if r is None:
        r = _REJECT[what] = Rejection(Radio.BLE, f"record_{what}")
    return r


def normalize_uuid_key(text: str) -> str | None:
    """'feaa' / 'FEAA' / '0000feaa' / 32 hex / dashed 128-bit -> 128-bit lowercase, or None."""
    t = text.strip().lower()
    if len(t) == 36 and t[8] == t[13] == t[18] == t[23] == "-":
        bare = t.replace("-", "")
    elif len(t) in (4, 8, 32):
        bare = t
    else:
        return None
    if len(bare) not in (4, 8, 32) or not _HEX.issuperset(bare):
        return None
    if len(bare) == 4:
        return uuid16(int(bare, 16))
    if len(bare) == 8:
        return uuid32(int(bare, 16))
    return f"{bare[:8]}-{bare[8:12]}-{bare[12:16]}-{bare[16:20]}-{bare[20:]}"


def _hex(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


class _Bad(Exception):
    """Internal: a field failed validation (caught in parse_recording_line, never escapes)."""


def _opt_int(d: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    """The int at `key`, None when missing/null; _Bad(key) when present but invalid."""
    v = d.get(key)
    if v is None:
        return None
    if type(v) is not int or not lo <= v <= hi:
        raise _Bad(f"bad_{key}")
    return v


def _manufacturer(raw: Any) -> dict[int, bytes] | None:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return None
    out: dict[int, bytes] = {}
    for k, v in raw.items():
        if not (k.isascii() and k.isdigit() and len(k) <= 5) or int(k) > 0xFFFF:
            return None
        data = _hex(v)
        if data is None:
            return None
        out[int(k)] = data
    return out


def _service_data(raw: Any) -> dict[str, bytes] | None:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return None
    out: dict[str, bytes] = {}
    for k, v in raw.items():
        uuid, data = normalize_uuid_key(k), _hex(v)
        if uuid is None or data is None:
            return None
        out[uuid] = data
    return out


def _service_uuids(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return None
    out: list[str] = []
    for item in raw:
        uuid = normalize_uuid_key(item) if isinstance(item, str) else None
        if uuid is None:
            return None
        out.append(uuid)
    return tuple(out)


def _advert(d: Mapping[str, Any]) -> Advert | Rejection:
    mfr = _manufacturer(d.get("manufacturer_data"))
    if mfr is None:
        return _rej("bad_manufacturer_data")
    sd = _service_data(d.get("service_data"))
    if sd is None:
        return _rej("bad_service_data")
    uuids = _service_uuids(d.get("service_uuids"))
    if uuids is None:
        return _rej("bad_service_uuids")
    name = d.get("local_name")
    if name is not None and not isinstance(name, str):
        return _rej("bad_local_name")
    tx = _opt_int(d, "tx_power", -127, 127)
    return Advert(
        local_name=name, manufacturer_data=mfr, service_data=sd, service_uuids=uuids, tx_power=tx
    )


def parse_recording_line(line: str | bytes) -> RecordedAdvert | Rejection:
    """One JSONL line -> (ts, address, address_type, rssi, advert, channel) or a Rejection."""
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _rej("bad_json")
    if not isinstance(d, dict):
        return _rej("not_object")
    raw_ts = d.get("ts")
    if not isinstance(raw_ts, int | float) or isinstance(raw_ts, bool):
        return _rej("bad_ts")
    ts = float(raw_ts)  # orjson gives ints past 64 bits as floats and refuses infinities
    if not math.isfinite(ts) or not 0 <= ts <= MAX_TS:
        return _rej("bad_ts")
    addr_text = d.get("address")
    address = parse_mac(addr_text) if isinstance(addr_text, str) else None
    if address is None:
        return _rej("bad_address")
    address_type = d.get("address_type", "unknown")
    if not isinstance(address_type, str) or address_type not in ADDRESS_TYPES:
        return _rej("bad_address_type")  # checked as str first: a list or dict is unhashable
    try:
        rssi = _opt_int(d, "rssi", -127, 127)
        channel = _opt_int(d, "channel", 0, 39)
        advert = _advert(d)
    except _Bad as bad:
        return _rej(str(bad))
    if isinstance(advert, Rejection):
        return advert
    return ts, address, address_type, rssi, advert, channel


def recording_dict(
    ts: float,
    address: bytes,
    address_type: str,
    rssi: int | None,
    advert: Advert,
    channel: int | None = None,
) -> dict[str, Any]:
    """The JSON object of one line (all keys present, canonical 128-bit uuid strings)."""
    return {
        "ts": ts,
        "address": format_mac(address),
        "address_type": address_type,
        "rssi": rssi,
        "manufacturer_data": {str(k): v.hex() for k, v in advert.manufacturer_data.items()},
        "service_data": {k: v.hex() for k, v in advert.service_data.items()},
        "service_uuids": list(advert.service_uuids),
        "local_name": advert.local_name,
        "tx_power": advert.tx_power,
        "channel": channel,
    }


def format_recording_line(
    ts: float,
    address: bytes,
    address_type: str,
    rssi: int | None,
    advert: Advert,
    channel: int | None = None,
) -> str:
    """One line (no newline) in the recording format."""
    return orjson.dumps(recording_dict(ts, address, address_type, rssi, advert, channel)).decode()
