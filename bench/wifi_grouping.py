"""Device grouping accuracy on real captures: distinct addresses vs estimated devices.

    python -m bench.wifi_grouping [--window 300] [--step 60]

- probing_patterns (../shared, GPL-3.0, read in place): each file is ONE phone. For each file:
  frames, distinct addresses, distinct fingerprints, groups created over the whole file, and
  the windowed estimate (devices heard in the last --window seconds, evaluated every --step
  seconds where the window holds frames): mean and max, and the error of the mean against 1.
  The upstream anonymisation randomised the locally-administered bit, so these files run with
  trust_address_kind=False.
- Brno sc6-61 (MIT): the CSV's occupancy column is the number of people in the lab. Per
  --window windows: mean occupancy, distinct addresses and groups heard, with the mean absolute
  error and Pearson correlation against occupancy. The fixed lab PCs the upstream README lists
  are removed first (they are not people).
Every frame goes the production way: pcap -> parse_record -> privacy.Boundary -> DeviceGrouper.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Iterable
from pathlib import Path

from presence_gateway.core.model import Observation, Sighting
from presence_gateway.core.presence.grouping import DeviceGrouper
from presence_gateway.core.privacy import Boundary, Pseudonymizer, parse_mac
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.pcap_records import iter_records

WIFI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "captures" / "wifi"
LAB_PCS = {parse_mac(m) for m in [  # upstream README: fixed lab all-in-one PCs
    "dc:fb:48:68:be:e4", "dc:fb:48:8c:71:fc", "dc:fb:48:2a:52:e0", "dc:fb:48:f5:c6:c2",
    "dc:fb:48:e3:ab:78", "dc:fb:48:00:51:90", "dc:fb:48:75:d8:42", "dc:fb:48:de:86:8d",
    "dc:fb:48:dd:c6:0b", "dc:fb:48:55:d5:78", "dc:fb:48:c2:1d:64", "40:ec:99:f9:34:a6",
    "40:ec:99:8e:3f:63", "40:ec:99:1f:3e:75"]}


def observations(path: Path, skip: set[bytes | None] | None = None,
                 floor: int = -128) -> list[Observation]:
    boundary = Boundary(Pseudonymizer(b"bench-secret-0123456789", period_s=10**9))
    out: list[Observation] = []
    for ts, linktype, data in iter_records(path):
        s = parse_record(data, linktype, ts)
        if (isinstance(s, Sighting) and not (skip and s.address in skip)
                and (s.rssi is None or s.rssi >= floor)):
            obs = boundary.admit(s)
            if obs is not None:
                out.append(obs)
    out.sort(key=lambda o: o.ts)
    return out


def windows(obs: list[Observation], grouper: DeviceGrouper, window: float,
            step: float) -> Iterable[tuple[float, int, int]]:
    """(window end, addresses heard, groups heard) every `step` seconds where frames exist."""
    if not obs:
        return
    t_next = obs[0].ts + step
    recent: dict[str, float] = {}
    for o in obs:
        while o.ts > t_next:
            addrs = sum(1 for last in recent.values() if last > t_next - window)
            if addrs:
                yield t_next, addrs, grouper.estimate(t_next, window)
            t_next += step
            if o.ts - t_next > window:  # long silence: jump ahead
                t_next += (o.ts - t_next) // step * step
        grouper.observe(o)
        recent[o.device] = o.ts


def one_phone(window: float, step: float) -> None:
    print(f"\none phone per file (probing_patterns), window {window:.0f} s every {step:.0f} s")
    print("| file | frames | addresses | fingerprints | groups (file) | windowed estimate "
          "mean / max | error of mean vs 1 |")
    print("|---|---|---|---|---|---|---|")
    errors = []
    for path in sorted((WIFI / "probing_patterns").glob("*.pcap")):
        obs = observations(path)
        grouper = DeviceGrouper(trust_address_kind=False, max_gap_s=window)
        est = [e for _, _, e in windows(obs, grouper, window, step)]
        mean = sum(est) / len(est)
        errors.append(abs(mean - 1))
        print(f"| {path.name.replace('_anonymized.pcap', '')} | {len(obs):,} "
              f"| {len({o.device for o in obs})} | {len({o.fingerprint for o in obs})} "
              f"| {grouper.stats.groups} | {mean:.2f} / {max(est)} | {mean - 1:+.2f} |")
    print(f"mean absolute error of the windowed estimate: {sum(errors) / len(errors):.2f} devices")


def _pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return sxy / (sx * sy) if sx and sy else float("nan")


def occupancy(path: Path) -> list[tuple[float, float]]:
    """(pcap ts, occupancy) per frame; the CSV row i is the pcap frame i."""
    with path.with_name(path.name.replace("anonymized.pcap", "ver-99.csv")).open() as fh:
        occ = [row["occupancy"] for row in csv.DictReader(fh, delimiter=";")]
    return [(ts, float(o)) for (ts, _, _), o in zip(iter_records(path), occ, strict=True)
            if o not in ("", "nan", "NaN")]


def lab(window: float) -> None:
    print(f"\nBrno sc6-61 lab vs occupancy (people), {window:.0f} s windows, lab PCs removed;"
          " the sniffer also hears the corridor and neighbouring rooms, hence the RSSI floor rows")
    print("| day | RSSI floor | windows | occupancy mean | addresses mean | groups mean "
          "| MAE addresses | MAE groups | r(addresses) | r(groups) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted((WIFI / "brno_sc6-61").glob("*.pcap")):
        for floor in (-128, -75, -65):
            _lab_row(path, window, floor)


def _lab_row(path: Path, window: float, floor: int) -> None:
    occ = occupancy(path)
    obs = observations(path, skip=LAB_PCS, floor=floor)
    grouper = DeviceGrouper(max_gap_s=window)
    rows = []
    for end, addrs, groups in windows(obs, grouper, window, window):
        people = [o for t, o in occ if end - window < t <= end]
        if people:
            rows.append((sum(people) / len(people), float(addrs), float(groups)))
    if len(rows) < 2:
        return
    p, a, g = ([r[i] for r in rows] for i in range(3))
    mae_a = sum(abs(x - y) for x, y in zip(a, p, strict=True)) / len(p)
    mae_g = sum(abs(x - y) for x, y in zip(g, p, strict=True)) / len(p)
    print(f"| {path.name[18:28]} | {'none' if floor == -128 else floor} | {len(rows)} "
          f"| {sum(p) / len(p):.1f} | "
          f"{sum(a) / len(a):.1f} | {sum(g) / len(g):.1f} | {mae_a:.1f} | {mae_g:.1f} | "
          f"{_pearson(a, p):.2f} | {_pearson(g, p):.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=300.0)
    parser.add_argument("--step", type=float, default=60.0)
    args = parser.parse_args(argv)
    if not WIFI.is_dir():
        print(f"{WIFI} absent: nothing to measure")
        return 1
    one_phone(args.window, args.step)
    lab(args.window)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
