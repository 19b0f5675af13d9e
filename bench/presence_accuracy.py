"""People, not addresses: replay the Brno lab captures and compare `present` with occupancy.

    python -m bench.presence_accuracy [--shared PATH]

Path per frame: pcap record -> gateway.core.wifi.parse_record -> the default repeat throttle ->
privacy Boundary (fixed test secret) -> PresenceEngine with the DEFAULT presence settings,
ticked every 10 s of capture time.
Each `presence.footfall` event at boundary B is compared with the lab's occupancy in the minute
[B - 60, B), taken from the CSV row of the same frame index (CSV times are CET = UTC+1, pcap
times UTC; using the frame index avoids the conversion). Prints MAE and Pearson correlation
per day with the coverage of `present_interval` (the share of minutes whose occupancy lies
inside), the hopping variants of the class days (`HOP_PLANS`: only the frames a hopping
radio would have caught), then the one-phone probing_patterns files (expected: 1 person each).

The probing_patterns files were anonymised upstream by replacing every address with a random
48-bit value, so their locally-administered bit is noise: their observations are marked RANDOM
(these phones randomise), otherwise half of one phone's addresses would look like separate
public devices. The Brno files keep the real bit and are replayed as they are.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from presence_gateway.core.config import load_config
from presence_gateway.core.events import FootfallCounted, VisitStarted
from presence_gateway.core.model import AddressKind, Observation, Sighting
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.core.throttle import AdvertThrottle
from presence_gateway.core.wifi.frames import parse_record

SECRET = b"bench-presence-accuracy-secret!!"
DAYS = ("2023-02-16", "2023-02-28", "2023-04-17")
TICK_S = 10.0
DEFAULTS = load_config(None)


def records(path: Path) -> Iterator[tuple[float, int, bytes]]:
    try:
        # the project's reader
        mod: Any = importlib.import_module("presence_gateway.drivers.wifi_pcap")
    except ImportError:
        from scapy.utils import RawPcapReader

        reader = RawPcapReader(str(path))
        linktype = int(reader.linktype)
        for data, meta in reader:
            yield meta.sec + meta.usec / 1e6, linktype, bytes(data)
        reader.close()
        return
    yield from mod.iter_pcap(str(path))


def observations(path: Path, *, random_la: bool = False) -> Iterator[tuple[int, Observation]]:
    """(frame index, observation) for every frame the parser turns into a sighting and the
    gateway's default throttle passes (a burst's identical retries count once)."""
    boundary = Boundary(Pseudonymizer(SECRET))
    throttle = AdvertThrottle(DEFAULTS.ble_repeat_interval_s,
                              wifi_interval_s=DEFAULTS.wifi_repeat_interval_s)
    for i, (ts, linktype, data) in enumerate(records(path)):
        s = parse_record(data, linktype, ts, "bench")
        if isinstance(s, Sighting) and throttle.admit(s):
            obs = boundary.admit(s)
            if obs is not None:
                if random_la:
                    obs = dataclasses.replace(obs, address_kind=AddressKind.RANDOM)
                yield i, obs


def replay(path: Path, truth_by_frame: list[float | None] | None, *, random_la: bool = False,
           intervals: dict[int, tuple[float, float]] | None = None,
           keep: Callable[[Observation], bool] | None = None,
           ) -> tuple[dict[int, float], dict[int, float], int]:
    """Estimated present per minute, true occupancy per minute, distinct units seen.
    `intervals` (if given) receives each minute's `present_interval`; `keep` (if given)
    drops the observations it refuses (the hopping variants)."""
    engine = PresenceEngine(PresenceSettings(), gateway_id="bench", store_id="lab")
    est: dict[int, float] = {}
    truth: dict[int, float] = {}
    units: set[str] = set()
    next_tick: float | None = None
    for i, obs in observations(path, random_la=random_la):
        if keep is not None and not keep(obs):
            continue
        while next_tick is not None and next_tick <= obs.ts:
            for ev in engine.tick(next_tick):
                if isinstance(ev, FootfallCounted):
                    est[int(ev.time // 60) - 1] = ev.present
                    if intervals is not None:
                        low, high = ev.counts["present_interval"]
                        intervals[int(ev.time // 60) - 1] = (low, high)
                elif isinstance(ev, VisitStarted):
                    units.add(ev.device)
            next_tick += TICK_S
        if next_tick is None:
            next_tick = (obs.ts // TICK_S + 1) * TICK_S
        for ev in engine.feed(obs):
            if isinstance(ev, VisitStarted):
                units.add(ev.device)
        if truth_by_frame is not None and truth_by_frame[i] is not None:
            truth[int(obs.ts // 60)] = truth_by_frame[i]  # type: ignore[assignment]
    return est, truth, len(units)


def occupancy(csv_path: Path) -> list[float | None]:
    out: list[float | None] = []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f, delimiter=";"):
            v = row.get("occupancy", "")
            try:
                x = float(v)
            except ValueError:
                x = math.nan
            out.append(None if math.isnan(x) else x)
    return out


def pearson(a: list[float], b: list[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    if va == 0 or vb == 0:
        return math.nan
    return sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True)) / math.sqrt(va * vb)


# Hopping variants of the fixed-channel days: (name, channels in dwell order, dwell s). The
# Brno class days were recorded on channel 2 only, so every plan includes channel 2 (the
# common 1/6/11 plan with the sniffer's channel in place of 1; 2-11 as the hopping 04-17 day).
HOP_PLANS: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("3 ch, 250 ms", (2, 6, 11), 0.25),
    ("3 ch, 1 s", (2, 6, 11), 1.0),
    ("10 ch, 250 ms", tuple(range(2, 12)), 0.25),
    ("10 ch, 100 ms", tuple(range(2, 12)), 0.1),
)


def hop_filter(channels: tuple[int, ...], dwell_s: float) -> Callable[[Observation], bool]:
    """Keep a frame only if a radio hopping over `channels`, `dwell_s` on each (phase 0 at
    the Unix epoch), was on the frame's channel when it was sent. A lower bound of what a
    hopper sees: the fixed sniffer did not record the same phone's bursts on the other
    channels, which a hopper would catch while it is away from channel 2."""
    n = len(channels)

    def keep(obs: Observation) -> bool:
        return channels[int(obs.ts // dwell_s) % n] == obs.channel

    return keep


def score(est: dict[int, float], truth: dict[int, float]) -> tuple[float, float]:
    """MAE and Pearson r over the minutes with both."""
    mins = sorted(k for k in truth if k in est)
    a = [est[k] for k in mins]
    b = [truth[k] for k in mins]
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(mins), pearson(a, b)


def hopping(wifi: Path) -> None:
    """MAE / r per hopping variant of the class days (the empty day hops already)."""
    days = DAYS[:2]
    print("| variant | " + " | ".join(f"{d} frames kept | MAE | r" for d in days) + " |")
    print("|---|" + "---|---|---|" * len(days))
    plans: list[tuple[str, Callable[[Observation], bool] | None]] = [("fixed (as recorded)",
                                                                      None)]
    plans += [(name, hop_filter(chs, dwell)) for name, chs, dwell in HOP_PLANS]
    for name, keep in plans:
        cells = []
        for day in days:
            base = wifi / "brno_sc6-61" / f"position_1_sc6-61_{day}"
            pcap = Path(f"{base}_anonymized.pcap")
            est, truth, _ = replay(pcap, occupancy(Path(f"{base}_ver-99.csv")), keep=keep)
            total = kept = 0
            for _, obs in observations(pcap):
                total += 1
                kept += keep is None or keep(obs)
            mae, r = score(est, truth)
            cells.append(f"{kept / total:.0%} | {mae:.2f} | {_r(r)}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument("--shared", type=Path, default=default)
    args = ap.parse_args()
    wifi = args.shared / "data" / "captures" / "wifi"
    if not wifi.is_dir():
        raise SystemExit(f"captures not found under {wifi}")
    print("| day | minutes | mean occupancy | mean present | MAE (people) | correlation "
          "| MAE / r after the first 10 min | 80 % interval coverage | mean width |")
    print("|---|---|---|---|---|---|---|---|---|")
    for day in DAYS:
        base = wifi / "brno_sc6-61" / f"position_1_sc6-61_{day}"
        iv: dict[int, tuple[float, float]] = {}
        est, truth, _ = replay(Path(f"{base}_anonymized.pcap"),
                               occupancy(Path(f"{base}_ver-99.csv")), intervals=iv)
        mins = sorted(k for k in truth if k in est)
        a = [est[k] for k in mins]
        b = [truth[k] for k in mins]
        mae = sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(mins)
        r, r10 = pearson(a, b), pearson(a[10:], b[10:])
        mae10 = sum(abs(x - y) for x, y in zip(a[10:], b[10:], strict=True)) / len(a[10:])
        # coverage: the share of minutes whose true occupancy lies in [low, high]
        cover = sum(iv[k][0] <= truth[k] <= iv[k][1] for k in mins) / len(mins)
        width = sum(iv[k][1] - iv[k][0] for k in mins) / len(mins)
        print(f"| {day} | {len(mins)} | {sum(b) / len(b):.1f} | {sum(a) / len(a):.1f} "
              f"| {mae:.2f} | {_r(r)} | {mae10:.2f} / {_r(r10)} | {cover:.2f} | {width:.1f} |")
    print()
    hopping(wifi)
    print()
    print("| probing_patterns file (1 phone) | minutes with present > 0 | visit units "
          "| mean present in those minutes | max present |")
    print("|---|---|---|---|---|")
    for pcap in sorted((wifi / "probing_patterns").glob("*.pcap")):
        est, _, units = replay(pcap, None, random_la=True)
        vals = [v for v in est.values() if v > 0] or [0.0]
        print(f"| {pcap.name.removesuffix('_anonymized.pcap')} | {len(vals)} | {units} "
              f"| {sum(vals) / len(vals):.2f} | {max(vals):.1f} |")


def _r(r: float) -> str:
    return "n/a (constant)" if math.isnan(r) else f"{r:.2f}"


if __name__ == "__main__":
    main()
