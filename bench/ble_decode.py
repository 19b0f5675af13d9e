"""BLE decode benchmark: our parse_ad + decode vs the Theengs decoder on the same adverts.

    python -m bench.ble_decode [--n 1000000] [--theengs-n 20000]

Corpus: every advertising PDU with AD data in ../shared/data/captures/ble/ice9_hackrf_boston
(LE link layer with PHDR, read by hand below) plus the decoding vectors, cycled up to --n
adverts. Rows:
- "ours raw, no memo": AD bytes -> Advert -> Decoded with the memo bypassed (every advert cold).
- "ours raw, memo": the same stream through the public API (repeats hit the LRU memo).
- "ours Advert, memo / no memo": decode() alone from an Advert (the bleak path).
- "theengs": TheengsDecoder.decodeBLE(json) on prebuilt JSON strings (a sample of --theengs-n,
  since it costs ~1 ms per advert); µs/advert is directly comparable.
"Both decode" restricts both sides to adverts that Theengs names and we decode to a specific kind.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from presence_gateway.core.ble import decode as ble
from presence_gateway.core.ble.decode import Advert, decode, parse_ad
from presence_gateway.core.ble.types import uuid16

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "captures" / "ble"
VECTORS = Path(__file__).resolve().parents[1] / "tests" / "data" / "ble"
_ADV_WITH_DATA = {0, 2, 4, 6}  # ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND


def _pcap_records(path: Path) -> Iterator[bytes]:
    raw = path.read_bytes()
    endian = "<" if raw[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    off = 24
    while off + 16 <= len(raw):
        incl = struct.unpack_from(endian + "I", raw, off + 8)[0]
        yield raw[off + 16 : off + 16 + incl]
        off += 16 + incl


def capture_ads() -> list[bytes]:
    """AD data of every advertising PDU in the PHDR captures (10-byte PHDR, AA, header, AdvA)."""
    out: list[bytes] = []
    for path in sorted((SHARED / "ice9_hackrf_boston").glob("*.pcap")):
        for rec in _pcap_records(path):
            if len(rec) < 22 or rec[10:14] != b"\xd6\xbe\x89\x8e":
                continue
            pdu_type, length = rec[14] & 0x0F, rec[15]
            if pdu_type in _ADV_WITH_DATA and 6 <= length <= len(rec) - 16:
                out.append(rec[22 : 16 + length])
    return out


def vector_ads() -> list[bytes]:
    out = []
    for v in json.loads((VECTORS / "bluetooth_data_tools_gap_vectors.json").read_text())["vectors"]:
        out.append(bytes.fromhex("".join(v["ad_payloads_hex"])))
    for name in ("beacontools_parser_vectors.json", "altbeacon_vectors.json"):
        out += [
            bytes.fromhex(v["ad_hex"]) for v in json.loads((VECTORS / name).read_text())["vectors"]
        ]
    return out


def theengs_json(advert: Advert) -> str:
    """The advert in Theengs' input shape (one manufacturer entry, one service data entry)."""
    doc: dict[str, str] = {"id": "c0:00:00:00:00:01"}
    if advert.local_name:
        doc["name"] = advert.local_name
    for cid, payload in advert.manufacturer_data.items():
        doc["manufacturerdata"] = (cid.to_bytes(2, "little") + payload).hex()
    for uuid, data in advert.service_data.items():
        doc["servicedata"] = data.hex()
        doc["servicedatauuid"] = "0x" + uuid[4:8] if uuid.endswith(uuid16(0)[8:]) else uuid
    return json.dumps(doc)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _loop(fn: Callable[..., object], items: Sequence[tuple[Any, ...]]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(*item)
    return time.perf_counter() - start


def _row(name: str, n: int, seconds: float) -> tuple[str, int, float, float]:
    return name, n, n / seconds, seconds / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--theengs-n", type=int, default=20_000)
    args = ap.parse_args()
    base = capture_ads() + vector_ads()
    stream = [base[i % len(base)] for i in range(args.n)]
    adverts = [a for a in map(parse_ad, base) if isinstance(a, Advert)]
    advert_stream = [adverts[i % len(adverts)] for i in range(args.n)]
    parse_cold, decode_cold = ble._parse.__wrapped__, ble._decode_items.__wrapped__

    def raw_cold() -> None:
        for ad in stream:
            a = parse_cold(ad, b"")
            if isinstance(a, Advert):
                decode_cold(tuple(a.manufacturer_data.items()), tuple(a.service_data.items()))

    def raw_memo() -> None:
        for ad in stream:
            a = parse_ad(ad)
            if isinstance(a, Advert):
                decode(a)

    def advert_cold() -> None:
        for a in advert_stream:
            decode_cold(tuple(a.manufacturer_data.items()), tuple(a.service_data.items()))

    def advert_memo() -> None:
        for a in advert_stream:
            decode(a)

    ble.memo_clear()
    rows = [
        _row("ours raw AD, no memo", args.n, _time(raw_cold)),
        _row("ours raw AD, memo", args.n, _time(raw_memo)),
        _row("ours Advert, no memo", args.n, _time(advert_cold)),
        _row("ours Advert, memo", args.n, _time(advert_memo)),
    ]
    rows += _theengs_rows(adverts, args.theengs_n, decode_cold)
    print(f"corpus: {len(base)} distinct adverts ({len(adverts)} parse), stream {args.n:,}")
    print(f"{'decoder':34} {'adverts':>10} {'adverts/s':>12} {'µs/advert':>10}")
    for name, n, rate, us in rows:
        print(f"{name:34} {n:>10,} {rate:>12,.0f} {us:>10.3f}")
    theengs_us = {r[0]: r[3] for r in rows}
    for ours, theirs in (("ours Advert, no memo (both)", "theengs (both)"),
                         ("ours Advert, no memo", "theengs (all)")):  # fmt: skip
        if ours in theengs_us and theirs in theengs_us:
            print(f"ratio {theirs} / {ours}: {theengs_us[theirs] / theengs_us[ours]:,.0f}x")


def _theengs_rows(
    adverts: list[Advert], n: int, decode_cold: Callable[..., object]
) -> list[tuple[str, int, float, float]]:
    try:
        from TheengsDecoder import decodeBLE
    except ImportError:
        print("theengsdecoder not installed: pip install theengsdecoder")
        return []
    docs = [theengs_json(a) for a in adverts]
    both = [
        i
        for i, (a, doc) in enumerate(zip(adverts, docs, strict=True))
        if decodeBLE(doc) and decode(a)[0].kind not in {"advert", "manufacturer"}
    ]
    rows = []
    for label, idx in (("all", list(range(len(docs)))), ("both", both)):
        if not idx:
            continue
        sample = [(docs[idx[i % len(idx)]],) for i in range(n)]
        items = [adverts[idx[i % len(idx)]] for i in range(n * 10)]
        ours = [(tuple(a.manufacturer_data.items()), tuple(a.service_data.items())) for a in items]
        rows.append(_row(f"theengs ({label})", n, _loop(decodeBLE, sample)))
        rows.append(_row(f"ours Advert, no memo ({label})", len(ours), _loop(decode_cold, ours)))
    return rows


if __name__ == "__main__":
    main()
