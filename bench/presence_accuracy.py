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
import hashlib
import importlib
import math
import statistics
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from presence_gateway.core.config import load_config
from presence_gateway.core.events import FootfallCounted, VisitStarted
from presence_gateway.core.model import AddressKind, Observation, Sighting
from presence_gateway.core.presence.config import PresenceSettings
from presence_gateway.core.presence.hopping import ChannelPlan
from presence_gateway.core.presence.sessions import PresenceEngine
from presence_gateway.core.privacy import Boundary, Pseudonymizer
from presence_gateway.core.throttle import AdvertThrottle
from presence_gateway.core.wifi.frames import parse_record

SECRET = b"bench-presence-accuracy-secret!!"
BEFORE = False  # --before: no channel plan (one channel) and no learnt placement offset
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


Radio_ = Callable[[Sighting], Iterable[Sighting]]


def observations(path: Path, *, random_la: bool = False, radio: Radio_ | None = None,
                 ) -> Iterator[tuple[int, Observation]]:
    """(frame index, observation) for every frame the parser turns into a sighting and the
    gateway's default throttle passes (a burst's identical retries count once). `radio` (the
    hopping variants) maps each recorded frame to what a hopping radio would have heard of
    it, before the throttle, as on a gateway."""
    boundary = Boundary(Pseudonymizer(SECRET))
    throttle = AdvertThrottle(DEFAULTS.ble_repeat_interval_s,
                              wifi_interval_s=DEFAULTS.wifi_repeat_interval_s)
    for i, (ts, linktype, data) in enumerate(records(path)):
        s0 = parse_record(data, linktype, ts, "bench")
        if not isinstance(s0, Sighting):
            continue
        for s in (s0,) if radio is None else radio(s0):
            if not throttle.admit(s):
                continue
            obs = boundary.admit(s)
            if obs is not None:
                if random_la:
                    obs = dataclasses.replace(obs, address_kind=AddressKind.RANDOM)
                yield i, obs


def replay(path: Path, truth_by_frame: list[float | None] | None, *, random_la: bool = False,
           intervals: dict[int, tuple[float, float]] | None = None,
           radio: Radio_ | None = None, plan: ChannelPlan | None = None,
           ) -> tuple[dict[int, float], dict[int, float], int]:
    """Estimated present per minute, true occupancy per minute, distinct units seen.
    `intervals` (if given) receives each minute's `present_interval`; `radio` (if given)
    is a hopping variant's radio and `plan` its channel plan, given to the engine as a live
    driver gives it (None: the engine infers it from the frames' channels)."""
    settings = PresenceSettings()
    if BEFORE:  # the engine as it was: no channel plan, no learnt placement offset
        plan = ChannelPlan()
        settings = dataclasses.replace(settings, placement_max_offset_db=0.0)
    engine = PresenceEngine(settings, gateway_id="bench", store_id="lab", plan=plan)
    est: dict[int, float] = {}
    truth: dict[int, float] = {}
    units: set[str] = set()
    next_tick: float | None = None
    for i, obs in observations(path, random_la=random_la, radio=radio):
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
# A sweeping phone's active scan visits channels 1-11 in order, `step_s` on each, sending the
# same probe on each: the recorded channel-2 frame at t places channel c at t + (c - 2) *
# step_s. The step is measured (`measure_sweeps`: ~10 ms); SWEEP_S is the default when a
# caller gives none.
SWEEP_S = 0.01


def _on(channels: tuple[int, ...], dwell_s: float, t: float) -> int:
    """The channel the radio is on at t (phase 0 at the Unix epoch)."""
    return channels[int(t // dwell_s) % len(channels)]


def _copy_on(s: Sighting, channel: int) -> Sighting:
    """The copy of a recorded probe a sweeping phone sent on `channel`: the same frame, heard
    on that channel, its frequency and DS parameter set (the channel it was sent on) with it."""
    if channel == s.channel:
        return s
    fields = dict(s.fields)
    fields["freq"] = 2407 + 5 * channel
    if fields.get("ds_channel") is not None:
        fields["ds_channel"] = channel
    return dataclasses.replace(s, channel=channel, fields=fields)


def hop_radio(channels: tuple[int, ...], dwell_s: float, *, sweep: bool = False,
              step_s: float = SWEEP_S) -> Radio_:
    """What a radio hopping over `channels`, `dwell_s` on each, hears of a recorded channel-2
    frame. Default: the frame if the radio was on its channel when it was sent, else nothing
    (a lower bound: the phone's copies on the other channels were not recorded). `sweep`:
    also the copies a sweeping phone sent on the plan's other channels (`step_s` apart), each tagged
    with the channel the radio was on, as a hopper's capture tags them."""

    def heard(s: Sighting) -> Iterable[Sighting]:
        if s.channel is None:
            return ()
        if not sweep:
            return (s,) if _on(channels, dwell_s, s.ts) == s.channel else ()
        out = []
        for c in channels:
            t = s.ts + (c - s.channel) * step_s
            if _on(channels, dwell_s, t) == c:
                out.append(_copy_on(s, c))
        return out[:1]  # the burst's first copy heard; the throttle drops the rest anyway

    return heard


# A phone's burst is told from the next by a silence longer than this: a scan sends its
# probes on every channel within ~0.5 s, and bursts are tens of seconds apart.
BURST_GAP_S = 1.0


@dataclasses.dataclass(frozen=True)
class Sweeps:
    """How phones send a burst, measured on the probing_patterns captures (three fixed
    monitors on channels 1, 6 and 11, one phone per file): the shares of bursts heard on all
    three channels, on two and on one, and the time a sweep takes from one channel number to
    the next (the median of |t6 - t1| / 5 and |t11 - t6| / 5 over the bursts heard on all
    three, first frame on each)."""

    shares: tuple[float, float, float]
    step_s: float


def measure_sweeps(patterns: Path) -> Sweeps:
    """`Sweeps` from the probing_patterns files (a burst: frames < BURST_GAP_S apart)."""
    counts = [0, 0, 0]
    steps: list[float] = []
    for pcap in sorted(patterns.glob("*.pcap")):
        heard = []
        for ts, linktype, data in records(pcap):
            s = parse_record(data, linktype, ts, "patterns")
            if isinstance(s, Sighting) and s.channel is not None:
                heard.append((s.ts, s.channel))
        heard.sort()
        last, first = -math.inf, dict[int, float]()
        for ts, ch in [*heard, (math.inf, 0)]:
            if ts - last > BURST_GAP_S and first:
                counts[3 - min(3, len(first))] += 1
                if len(first) == 3 and {1, 6, 11} <= first.keys():
                    steps += [abs(first[6] - first[1]) / 5, abs(first[11] - first[6]) / 5]
                first = {}
            first.setdefault(ch, ts)
            last = ts
    total = sum(counts)
    if not total or not steps:
        raise SystemExit(f"no probe bursts on 1/6/11 in {patterns}")
    return Sweeps((counts[0] / total, counts[1] / total, counts[2] / total),
                  statistics.median(steps))


def _uniform(*key: object) -> float:
    """A reproducible draw in [0, 1) from `key` (the same variant every run)."""
    h = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def measured_radio(channels: tuple[int, ...], dwell_s: float, sweeps: Sweeps) -> Radio_:
    """What a radio hopping over `channels` hears when phones send their bursts as measured
    (`measure_sweeps`): a burst is a sweep of channels 1-11 with the share heard on all three
    monitors; a partial sweep (each other channel sent or not, even odds) with the share heard
    on two; the recorded channel only with the share heard on one. Drawn once per burst of
    each source address, reproducibly."""
    sweep = hop_radio(channels, dwell_s, sweep=True, step_s=sweeps.step_s)
    single = hop_radio(channels, dwell_s)
    shares = sweeps.shares
    bursts: dict[bytes, list[float]] = {}  # address -> [draw, last frame]

    def heard(s: Sighting) -> Iterable[Sighting]:
        if s.channel is None:
            return ()
        b = bursts.get(s.address)
        if b is None or s.ts - b[1] > BURST_GAP_S:
            b = bursts[s.address] = [_uniform(s.address, s.ts), s.ts]
        b[1] = s.ts
        u = b[0]
        if u < shares[0]:
            return sweep(s)
        if u >= shares[0] + shares[1]:
            return single(s)
        for c in channels:  # a partial sweep: the copies this burst has, in order
            if c != s.channel and _uniform(u, c) < 0.5:
                continue
            if _on(channels, dwell_s, s.ts + (c - s.channel) * sweeps.step_s) == c:
                return (_copy_on(s, c),)
        return ()

    return heard


def thinned_radio(keep: float) -> Radio_:
    """A fixed radio that hears only `keep` of each phone's bursts (drawn per burst): phones
    that probe less often, or a noisier room; the engine is not told."""
    bursts: dict[bytes, list[float]] = {}

    def heard(s: Sighting) -> Iterable[Sighting]:
        b = bursts.get(s.address)
        if b is None or s.ts - b[1] > BURST_GAP_S:
            b = bursts[s.address] = [_uniform("thin", s.address, s.ts), s.ts]
        b[1] = s.ts
        return (s,) if b[0] < keep else ()

    return heard


def shift_radio(db: int) -> Radio_:
    """Every frame's RSSI moved by `db`: the same room heard from a hotter or colder spot."""

    def heard(s: Sighting) -> Iterable[Sighting]:
        return (s if s.rssi is None else dataclasses.replace(s, rssi=s.rssi + db),)

    return heard


def score(est: dict[int, float], truth: dict[int, float]) -> tuple[float, float]:
    """MAE and Pearson r over the minutes with both."""
    mins = sorted(k for k in truth if k in est)
    a = [est[k] for k in mins]
    b = [truth[k] for k in mins]
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(mins), pearson(a, b)


def coverage(iv: dict[int, tuple[float, float]], truth: dict[int, float]) -> float:
    """The share of minutes whose true occupancy lies in `present_interval`."""
    mins = [k for k in truth if k in iv]
    return sum(iv[k][0] <= truth[k] <= iv[k][1] for k in mins) / len(mins)


def above(iv: dict[int, tuple[float, float]], truth: dict[int, float]) -> float:
    """The share of minutes whose true occupancy lies above `present_interval` (read low)."""
    mins = [k for k in truth if k in iv]
    return sum(truth[k] > iv[k][1] for k in mins) / len(mins)


Variant = tuple[str, Callable[[], Radio_ | None], ChannelPlan | None]


def variants(sweeps: Sweeps) -> list[Variant]:
    """(name, a fresh radio for one replay, plan given to the engine) of every variant of the
    class days (a radio keeps per-burst state, so each replay gets its own)."""
    p10 = ChannelPlan(tuple(range(2, 12)), 0.25)

    def measured10(db: int) -> Radio_:
        return _chain(shift_radio(db), measured_radio(p10.channels, p10.dwell_s, sweeps))

    out: list[Variant] = [("fixed (as recorded)", lambda: None, None)]
    for name, chs, dwell in HOP_PLANS:
        out.append((f"{name}, lower bound", partial(hop_radio, chs, dwell),
                    ChannelPlan(chs, dwell)))
    for name, chs, dwell in HOP_PLANS:
        out.append((f"{name}, phones as measured", partial(measured_radio, chs, dwell, sweeps),
                    ChannelPlan(chs, dwell)))
    out += [(f"RSSI {db:+d} dB", partial(shift_radio, db), None) for db in (-6, 6)]
    out += [(f"10 ch, 250 ms, as measured, RSSI {db:+d} dB", partial(measured10, db), p10)
            for db in (-6, 6)]
    out += [(f"{keep:.0%} of the bursts (fixed radio)", partial(thinned_radio, keep), None)
            for keep in (0.8, 0.6)]
    return out


def _chain(first: Radio_, then: Radio_) -> Radio_:
    def heard(s: Sighting) -> Iterable[Sighting]:
        return [y for x in first(s) for y in then(x)]

    return heard


def hopping(wifi: Path) -> None:
    """MAE / r / interval coverage per variant of the class days (the empty day hops
    already)."""
    days = DAYS[:2]
    sweeps = measure_sweeps(wifi / "probing_patterns")
    a, b, c = sweeps.shares
    print(f"Phones' bursts as measured on probing_patterns (monitors on 1/6/11): {a:.0%} heard "
          f"on all three channels, {b:.0%} on two, {c:.0%} on one; a sweep moves one channel "
          f"number in {sweeps.step_s * 1000:.1f} ms.\n")
    print("| variant | " + " | ".join(f"{d} frames kept | MAE | r | coverage (truth above)"
                                     for d in days) + " |")
    print("|---|" + "---|---|---|---|" * len(days))
    for name, make, plan in variants(sweeps):
        cells = []
        for day in days:
            base = wifi / "brno_sc6-61" / f"position_1_sc6-61_{day}"
            pcap = Path(f"{base}_anonymized.pcap")
            iv: dict[int, tuple[float, float]] = {}
            est, truth, _ = replay(pcap, occupancy(Path(f"{base}_ver-99.csv")), radio=make(),
                                   plan=plan, intervals=iv)
            total = sum(1 for _ in observations(pcap))
            kept = sum(1 for _ in observations(pcap, radio=make()))
            mae, r = score(est, truth)
            cells.append(f"{kept / total:.0%} | {mae:.2f} | {_r(r)} | "
                         f"{coverage(iv, truth):.2f} ({above(iv, truth):.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument("--shared", type=Path, default=default)
    ap.add_argument("--before", action="store_true",
                    help="the engine without the channel plan and the learnt placement offset")
    args = ap.parse_args()
    global BEFORE
    BEFORE = args.before
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
