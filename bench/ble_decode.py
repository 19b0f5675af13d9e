"""BLE decode benchmark: our parse_ad + decode vs the Theengs decoder on the same adverts.

    python -m bench.ble_decode [--n 200000] [--rounds 7] [--theengs-n 3000] [--json]

Corpus (bench/ble_corpus.py): every BLE source in ../shared/data/captures/ble (ice9 PHDR pcaps,
nRF Sniffer pcapng, btsnoop log, every vector file), deduplicated by AD bytes; the per-source
counts are printed. Rows, each timed in --rounds interleaved rounds (round r runs every row once),
reported as the median and [min-max] of the rounds, since the 2-core VM is shared:
- "ours raw AD, no memo": AD bytes -> Advert -> Decoded with the memo bypassed, the distinct
  corpus cycled to --n adverts (every advert cold).
- "ours Advert, no memo": decode() alone from a parsed Advert (the bleak path), memo bypassed.
- "ours raw AD, memo": the public API on the sources in file order (repeats kept, cycled to
  --n), i.e. what a replay costs with the LRU memo, the first pass's misses included (so a
  smaller --n gives a higher figure).
- "..., as heard": the two no-memo rows on that file-order stream, so each format weighs as
  often as it is heard (Apple Continuity dominates) instead of once per distinct advert.
- Theengs: TheengsDecoder.decodeBLE(json) on prebuilt JSON strings vs our decode() from the
  Advert with the memo bypassed, PAIRED: each round takes a fresh sample of --theengs-n adverts
  (Theengs costs ~0.5-1.5 ms each), times ours then theirs on exactly that sample, and the ratio
  is per round. "all": every advert that parses; "both": the adverts Theengs names and we decode
  to a specific kind (not the generic "advert"/"manufacturer").
--json: one last line of JSON (keys in JSON_KEYS) for `make bench`'s summary table: µs floats,
ratios as floats (null when theengsdecoder is not installed), corpus = distinct adverts (int).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import ble_corpus
from bench.summary import report
from presence_gateway.core.ble import decode as ble
from presence_gateway.core.ble.decode import Advert, decode, parse_ad
from presence_gateway.core.ble.types import uuid16

JSON_KEYS = (
    "uncached_advert_us",
    "uncached_raw_us",
    "memo_raw_us",
    "theengs_ratio_all",
    "theengs_ratio_all_min",
    "theengs_ratio_all_max",
    "theengs_ratio_both",
    "theengs_ratio_both_min",
    "theengs_ratio_both_max",
    "corpus",
)
GENERIC_KINDS = frozenset({"advert", "manufacturer"})

# The memo bypassed: the functions under the LRU wrappers (what a never-seen advert costs).
parse_cold: Callable[[bytes, bytes], object] = ble._parse.__wrapped__
decode_cold: Callable[..., object] = ble._decode_items.__wrapped__


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


def _items(adverts: Sequence[Advert]) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    return [(tuple(a.manufacturer_data.items()), tuple(a.service_data.items())) for a in adverts]


def raw_cold(stream: Sequence[bytes]) -> float:
    start = time.perf_counter()
    for ad in stream:
        a = parse_cold(ad, b"")
        if type(a) is Advert:
            mfr, svc = a.manufacturer_data, a.service_data
            decode_cold(tuple(mfr.items()) if mfr else (), tuple(svc.items()) if svc else ())
    return time.perf_counter() - start


def advert_cold(adverts: Sequence[Advert]) -> float:
    """What decode() does on a memo miss: the item tuples, then the decoders."""
    start = time.perf_counter()
    for a in adverts:
        mfr, svc = a.manufacturer_data, a.service_data
        decode_cold(tuple(mfr.items()) if mfr else (), tuple(svc.items()) if svc else ())
    return time.perf_counter() - start


def raw_memo(stream: Sequence[bytes]) -> float:
    start = time.perf_counter()
    for ad in stream:
        a = parse_ad(ad)
        if type(a) is Advert:
            decode(a)
    return time.perf_counter() - start


def _theirs(docs: Sequence[str]) -> float:
    from TheengsDecoder import decodeBLE

    start = time.perf_counter()
    for doc in docs:
        decodeBLE(doc)
    return time.perf_counter() - start


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _cycle(items: Sequence[Any], n: int) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


def measure_ours(
    distinct: list[bytes], file_order: list[bytes], n: int, rounds: int
) -> dict[str, list[float]]:
    """µs per advert of each of our rows, one value per round (rows interleaved per round)."""
    adverts = [a for a in map(parse_ad, distinct) if type(a) is Advert]
    heard = [a for a in map(parse_ad, file_order) if type(a) is Advert]
    streams: dict[str, tuple[Callable[[Any], float], list[Any]]] = {
        "ours raw AD, no memo": (raw_cold, _cycle(distinct, n)),
        "ours Advert, no memo": (advert_cold, _cycle(adverts, n)),
        "ours raw AD, memo": (raw_memo, _cycle(file_order, n)),
        "ours raw AD, no memo, as heard": (raw_cold, _cycle(file_order, n)),
        "ours Advert, no memo, as heard": (advert_cold, _cycle(heard, n)),
    }
    out: dict[str, list[float]] = {name: [] for name in streams}
    for _ in range(rounds):
        ble.memo_clear()  # each memo round starts cold, as a fresh process would
        for name, (fn, stream) in streams.items():
            out[name].append(fn(stream) / len(stream) * 1e6)
    return out


def measure_theengs(
    distinct: list[bytes], per_round: int, rounds: int, ours_repeat: int = 10
) -> dict[str, list[tuple[float, float]]] | None:
    """Per round and set: (ours µs, theirs µs) on the same sample, ours first."""
    try:
        from TheengsDecoder import decodeBLE
    except ImportError:
        print("theengsdecoder not installed: pip install theengsdecoder")
        return None
    adverts = [a for a in map(parse_ad, distinct) if type(a) is Advert]
    docs = [theengs_json(a) for a in adverts]
    both = [
        i
        for i, (a, doc) in enumerate(zip(adverts, docs, strict=True))
        if decodeBLE(doc) and decode(a)[0].kind not in GENERIC_KINDS
    ]
    sets = {"all": list(range(len(adverts))), "both": both}
    rng = random.Random(15)
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in sets}
    for _ in range(rounds):
        for name, idx in sets.items():
            if not idx:
                continue
            sample = [rng.choice(idx) for _ in range(per_round)]
            # Ours is ~1000x faster: the same sample repeated keeps its timing well above the
            # clock's resolution; µs/advert is unaffected (the memo is bypassed).
            ours = advert_cold([adverts[i] for i in sample] * ours_repeat)
            theirs = _theirs([docs[i] for i in sample])
            out[name].append((ours / (per_round * ours_repeat) * 1e6, theirs / per_round * 1e6))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000, help="adverts per round and row (ours)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--theengs-n", type=int, default=3_000, help="Theengs adverts per round")
    ap.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = ap.parse_args(argv)
    per_source = ble_corpus.sources()
    distinct = ble_corpus.distinct(per_source)
    file_order = [ad for ads in per_source.values() for ad in ads]
    print(f"{'source':56} {'adverts':>8} {'distinct':>9}")
    for name, ads in per_source.items():
        print(f"{name:56} {len(ads):>8,} {len(set(ads)):>9,}")
    parsed = sum(1 for ad in distinct if type(parse_ad(ad)) is Advert)
    print(f"{'corpus (distinct across sources)':56} {len(file_order):>8,} {len(distinct):>9,}")
    print(f"({parsed:,} parse, {len(distinct) - parsed:,} are ad_overrun rejections)\n")

    ours = measure_ours(distinct, file_order, args.n, args.rounds)
    print(f"{'decoder':34} {'adverts/round':>13} {'µs/advert median [min-max]':>30}")
    for name, values in ours.items():
        med, lo, hi = _stats(values)
        print(f"{name:34} {args.n:>13,} {f'{med:.3f} [{lo:.3f}-{hi:.3f}]':>30}")
    print(f"({args.rounds} rounds; the no-memo rows without 'as heard' are the distinct corpus)")

    result: dict[str, float | int | None] = {
        "uncached_advert_us": statistics.median(ours["ours Advert, no memo"]),
        "uncached_raw_us": statistics.median(ours["ours raw AD, no memo"]),
        "memo_raw_us": statistics.median(ours["ours raw AD, memo"]),
    }
    paired = measure_theengs(distinct, args.theengs_n, args.rounds)
    for name in ("all", "both"):
        pairs = (paired or {}).get(name) or []
        if not pairs:
            # null, not NaN: json.dumps would write NaN, which strict JSON readers refuse
            result.update({f"theengs_ratio_{name}{s}": None for s in ("", "_min", "_max")})
            continue
        ratio = _stats([theirs / us for us, theirs in pairs])
        theirs_med = _stats([theirs for _, theirs in pairs])
        ours_med = _stats([us for us, _ in pairs])
        print(
            f"theengs ({name}): {theirs_med[0]:,.1f} µs [{theirs_med[1]:,.1f}-{theirs_med[2]:,.1f}]"
            f" vs ours Advert, no memo {ours_med[0]:.3f} µs [{ours_med[1]:.3f}-{ours_med[2]:.3f}]"
            f" -> paired ratio {ratio[0]:,.0f}x [{ratio[1]:,.0f}-{ratio[2]:,.0f}]"
            f" ({len(pairs)} rounds x {args.theengs_n:,} adverts)"
        )
        keys = (f"theengs_ratio_{name}{s}" for s in ("", "_min", "_max"))
        result.update(dict(zip(keys, ratio, strict=True)))
    result["corpus"] = len(distinct)
    advert = ours["ours Advert, no memo"]
    report("ble_uncached_us", statistics.median(advert), min(advert), max(advert))
    for name in ("all", "both"):
        got = [result[f"theengs_ratio_{name}{s}"] for s in ("", "_min", "_max")]
        if all(v is not None for v in got):
            report(f"ble_theengs_{name}", *(float(v or 0.0) for v in got))
    if args.json:
        print(json.dumps({k: result[k] for k in JSON_KEYS}))


if __name__ == "__main__":
    main()
