"""Wi-Fi parse benchmark: scapy dissection vs gateway.core.wifi on the same captures.

    python -m bench.wifi_parse [--frames 1000000] [--scapy-sample 2000]

Captures:
- the Brno 2023-02-28 day (27k real probe requests, ../shared; the bundled 2023-04-17 file when
  ../shared is absent);
- a synthetic file of >= --frames records written to a private temporary directory (removed at
  the end): every real Wi-Fi capture repeated, each copy with timestamps shifted and
  transmitter addresses rewritten.
Rows, CPU time (time.process_time) per frame, pcap reading included:
- "ours (native reader)": drivers/pcap_records.iter_records -> parse_record (the replay path);
- "ours (scapy RawPcapReader)": scapy's reader -> parse_record (the documented fallback);
- "ours (parse only)": parse_record over records already in memory (the live-socket path);
- "scapy": RawPcapReader -> RadioTap(bytes) -> the same fields (address, RSSI, frequency,
  sequence, SSID, element ids, vendor OUIs). scapy costs ~1.5 ms per frame, so on the synthetic
  file its reader is timed over every record and its dissection over --scapy-sample evenly
  spaced frames; its µs/frame is the sum of the two per-frame costs.
Then the paired comparison (`--rounds`, interleaved): each round times our parser over every
record of the day and scapy's dissection over --scapy-sample evenly spaced ones, both from
bytes in memory; the ratio per round, median and range.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.summary import report
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.pcap_records import iter_records, read_scapy

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data" / "captures" / "wifi"
BUNDLED = REPO / "tests" / "data" / "wifi"
BRNO_DAY = SHARED / "brno_sc6-61" / "position_1_sc6-61_2023-02-28_anonymized.pcap"


def scapy_fields(data: bytes) -> tuple[Any, ...] | None:
    """What the gateway extracts, the scapy way."""
    from scapy.layers.dot11 import Dot11, Dot11Elt, RadioTap

    pkt = RadioTap(data)
    dot11 = pkt.getlayer(Dot11)
    if dot11 is None or dot11.type != 0 or dot11.subtype != 4:
        return None
    ids, ouis, ssid = [], [], None
    elt = pkt.getlayer(Dot11Elt)
    while isinstance(elt, Dot11Elt):
        ids.append(elt.ID)
        raw = elt.original[2:2 + elt.len]
        if elt.ID == 0:
            ssid = raw or None
        elif elt.ID == 221:
            ouis.append(int.from_bytes(raw[:3], "big"))
        elt = elt.payload
    return (dot11.addr2, pkt.dBm_AntSignal, pkt.ChannelFrequency, dot11.SC >> 4, ssid,
            tuple(ids), tuple(ouis))


def _cpu(run: Callable[[], int]) -> tuple[int, float]:
    start = time.process_time()
    frames = run()
    return frames, time.process_time() - start


def _count(results: Iterable[object]) -> int:
    n = 0
    for _ in results:
        n += 1
    return n


def build_synthetic(target: int, folder: Path) -> Path:
    """Repeat every real capture until `target` records; each copy shifts time by a day and
    XORs the copy number into the transmitter address (so addresses do not repeat)."""
    synth = folder / "wifi_synth.pcap"
    sources = sorted(SHARED.glob("**/*.pcap")) or sorted(BUNDLED.glob("*.pcap"))
    base = [r for p in sources for r in iter_records(p) if r[1] & 0xFFFF == 127]
    rec = struct.Struct("<IIII")
    written = 0
    with synth.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 127))
        copy = 0
        while written < target:
            copy += 1
            tag = struct.pack(">I", copy)
            for ts, _, data in base:
                hlen = data[2] | data[3] << 8 if len(data) >= 4 else 0
                frame = bytearray(data)
                if hlen and len(frame) >= hlen + 16:
                    for i in range(4):  # low four address octets, keep the OUI/LA bits
                        frame[hlen + 12 + i] ^= tag[i]
                t = ts + copy * 86400.0
                out.write(rec.pack(int(t), int((t % 1) * 1e6), len(frame), len(frame)))
                out.write(frame)
                written += 1
                if written >= target:
                    break
    return synth


def measure(path: Path, scapy_sample: int) -> list[tuple[str, int, float]]:
    rows: list[tuple[str, int, float]] = []
    rows.append(("ours (native reader)", *_cpu(
        lambda: _count(parse_record(d, lt, ts) for ts, lt, d in iter_records(path)))))
    rows.append(("ours (scapy RawPcapReader)", *_cpu(
        lambda: _count(parse_record(d, lt, ts) for ts, lt, d in read_scapy(path)))))
    records = list(iter_records(path))
    rows.append(("ours (parse only)", *_cpu(
        lambda: _count(parse_record(d, lt, ts) for ts, lt, d in records))))
    if not scapy_sample or len(records) <= scapy_sample:
        rows.append(("scapy", *_cpu(lambda: _count(_scapy(d) for _, _, d in read_scapy(path)))))
        return rows
    # sampled: scapy's reader timed on every record, its dissection on evenly spaced ones
    stride = len(records) // scapy_sample
    sample = [d for _, _, d in records[::stride]]
    records.clear()  # a million records in memory are not needed for the rest
    n_read, read_cpu = _cpu(lambda: _count(read_scapy(path)))
    n_dissect, dissect_cpu = _cpu(lambda: _count(_scapy(d) for d in sample))
    per_frame = read_cpu / n_read + dissect_cpu / n_dissect
    rows.append((f"scapy (reader: all; dissection: every {stride}th)", n_dissect,
                 per_frame * n_dissect))
    return rows


def _scapy(data: bytes) -> tuple[Any, ...] | None:
    try:
        return scapy_fields(data)
    except Exception:  # scapy gives up on a few malformed frames; the attempt is still timed
        return None


def table(name: str, rows: list[tuple[str, int, float]]) -> str:
    scapy_us = rows[-1][2] / rows[-1][1] * 1e6
    lines = [f"\n{name}", "| path | frames | µs/frame | frames/s | vs scapy |",
             "|---|---|---|---|---|"]
    for label, frames, cpu in rows:
        us = cpu / frames * 1e6
        lines.append(f"| {label} | {frames:,} | {us:.2f} | {1e6 / us:,.0f} "
                     f"| {scapy_us / us:,.0f}x |")
    return "\n".join(lines)


def paired(path: Path, rounds: int, sample: int) -> list[float]:
    records = [(lt, d) for _, lt, d in iter_records(path)]
    picked = [d for _, d in records[::max(1, len(records) // sample)]]
    ratios = []
    for _ in range(rounds):
        n, ours = _cpu(lambda: _count(parse_record(d, lt, 0.0) for lt, d in records))
        m, theirs = _cpu(lambda: _count(_scapy(d) for d in picked))
        ratios.append((theirs / m) / (ours / n))
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--scapy-sample", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    day = BRNO_DAY
    if not day.exists():
        day = BUNDLED / "position_1_sc6-61_2023-04-17_anonymized.pcap"
    print(table(f"{day.name} (every frame, both parsers)", measure(day, 0)))
    with tempfile.TemporaryDirectory(prefix="pg-wifi-parse-") as tmp:
        synth = build_synthetic(args.frames, Path(tmp))
        print(table(f"synthetic capture ({args.frames:,} frames from the real captures)",
                    measure(synth, args.scapy_sample)))
    ratios = paired(day, args.rounds, args.scapy_sample)
    print(f"\npaired, {args.rounds} interleaved rounds on {day.name}: scapy / ours = "
          f"{statistics.median(ratios):,.0f}x [{min(ratios):,.0f}-{max(ratios):,.0f}]")
    report("wifi_scapy_ratio", statistics.median(ratios), min(ratios), max(ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
