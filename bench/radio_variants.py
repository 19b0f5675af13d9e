"""What a hopping, shifted or sparser radio would have heard of a fixed-channel recording.

The Brno class days were recorded by one sniffer on channel 2. Each `Radio_` here maps one
recorded Sighting to what another radio would have heard of it (nothing, the frame, or a copy
on another channel), before the gateway's throttle, as on a gateway: the hopping variants
(`hop_radio`: the lower bound, or phones sweeping every channel; `measured_radio`: phones
sending their bursts as measured on the probing_patterns captures), an RSSI shift
(`shift_radio`: another spot) and fewer bursts (`thinned_radio`). `variants` lists the ones
bench/presence_accuracy.py scores. Pure and reproducible: draws come from a hash of the
frame's address and time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from bisect import bisect_right
from collections.abc import Callable, Iterable
from functools import partial
from typing import NamedTuple

from presence_gateway.core.model import Sighting
from presence_gateway.core.presence.hopping import ChannelPlan, jittered_dwell

Radio_ = Callable[[Sighting], Iterable[Sighting]]

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


class _Hops:
    """When a hopping radio is on which channel: `channels` in turn, each step's dwell drawn
    as the live driver draws it (core/presence/hopping.py `jittered_dwell`, reproducibly:
    the draws are seeded by the plan and `seed`, one schedule of the many a gateway might
    run), from the first time asked (less a minute: a sweep's
    copies are asked for a little before and after their frame). `jitter=False`: a fixed
    cycle, phase 0 at the Unix epoch (what a driver without jitter would do; kept to measure
    what the jitter does)."""

    def __init__(self, channels: tuple[int, ...], dwell_s: float, jitter: bool = True,
                 seed: int = 0) -> None:
        self.channels, self.dwell_s, self.jitter = channels, dwell_s, jitter
        self._draw = random.Random(repr((channels, dwell_s, seed))).random
        self._ends: list[float] = []  # end of each step, from the first
        self._first = 0.0

    def on(self, t: float) -> int:
        """The channel the radio is on at t."""
        n = len(self.channels)
        if not self.jitter:
            return self.channels[int(t // self.dwell_s) % n]
        ends = self._ends
        if not ends:
            self._first = t - 60.0
            ends.append(self._first + jittered_dwell(self.dwell_s, self._draw()))
        if t < self._first:
            return self.channels[0]
        while ends[-1] <= t:
            ends.append(ends[-1] + jittered_dwell(self.dwell_s, self._draw()))
        return self.channels[bisect_right(ends, t) % n]


class Esp32Scan:
    """When the Brno ESP32 sniffer in its all-channel mode is on which channel: its firmware
    (T. Bravenec's ESP32 probe sniffer, GitHub copy a-wear/esp32-probe-sniffer at de45ba7,
    main/main.c, CONFIG_ALL_CHANNEL_SCAN) loops `for chan in
    1..10: vTaskDelay(5); set_channel(chan)` and one more `vTaskDelay(5)`, 50 ms a tick of its
    100 Hz FreeRTOS clock: channels 1-9 for 50 ms each and channel 10 for 100 ms, a fixed
    550 ms cycle (no jitter: a cycle of 550 ms does not divide a phone's 60 s probe interval).
    Its captures tag each frame one channel high (pcap.c writes `channels[rx_ctrl.channel]`
    from a table that starts at 2412 MHz): channels 2-11, as the real hopping day 04-17
    shows (2417-2462 MHz, each frame one above its DS parameter set). `seed` moves the phase
    (the sniffer starts when it is switched on)."""

    CHANNELS = tuple(range(2, 12))  # as tagged
    DWELLS = (0.05,) * 9 + (0.10,)

    def __init__(self, seed: int = 0) -> None:
        self._ends, t = [], 0.0
        for d in self.DWELLS:
            t += d
            self._ends.append(t)
        self._cycle = t
        self._phase = _uniform("esp32", seed) * t

    def on(self, t: float) -> int:
        return self.CHANNELS[bisect_right(self._ends, (t + self._phase) % self._cycle)
                             % len(self.CHANNELS)]


def _copy_on(s: Sighting, channel: int) -> Sighting:
    """What a radio tuned to `channel` hears of the sweep a recorded probe belongs to: the same
    frame at the same RSSI, heard on that channel (its frequency with it), sent where the
    recorded one was sent relative to its radio. The Brno sniffer on channel 2 heard most
    probes off-channel (DS parameter set 1: 69 % of 02-28's frames, 57 % of 02-16's; the
    2.4 GHz channels overlap), at the RSSI an adjacent channel's filter leaves; a radio on
    `channel` hears the copy sent on `channel` - 1 the same way, DS set and all. Tagging
    such a copy as sent on `channel` made its adjacent-channel RSSI look on-channel, and the
    grouper then compared it (20-23 extra groups on 02-28 at 3 ch 1 s and 10 ch)."""
    if channel == s.channel:
        return s
    fields = dict(s.fields)
    fields["freq"] = 2407 + 5 * channel
    ds = fields.get("ds_channel")
    if isinstance(ds, int) and s.channel is not None:
        fields["ds_channel"] = channel + (ds - s.channel)
    return dataclasses.replace(s, channel=channel, fields=fields)


def hop_radio(channels: tuple[int, ...], dwell_s: float, *, sweep: bool = False,
              step_s: float = SWEEP_S, jitter: bool = True,
              hops: _Hops | Esp32Scan | None = None, seed: int = 0) -> Radio_:
    """What a radio hopping over `channels`, `dwell_s` on each (on average, `_Hops`), hears of
    a recorded channel-2 frame. Default: the frame if the radio was on its channel when it
    was sent, else nothing (a lower bound: the phone's copies on the other channels were not
    recorded). `sweep`: also the copies a sweeping phone sent on the plan's other channels
    (`step_s` apart), each tagged with the channel the radio was on, as a hopper's capture
    tags them."""
    on = (hops or _Hops(channels, dwell_s, jitter, seed)).on

    def heard(s: Sighting) -> Iterable[Sighting]:
        if s.channel is None:
            return ()
        if not sweep:
            return (s,) if on(s.ts) == s.channel else ()
        out = []
        for c in channels:
            t = s.ts + (c - s.channel) * step_s
            if on(t) == c:
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


def _uniform(*key: object) -> float:
    """A reproducible draw in [0, 1) from `key` (the same variant every run)."""
    h = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def measured_radio(channels: tuple[int, ...], dwell_s: float, sweeps: Sweeps,
                   jitter: bool = True, seed: int = 0,
                   hops: _Hops | Esp32Scan | None = None) -> Radio_:
    """What a radio hopping over `channels` hears when phones send their bursts as measured
    (`measure_sweeps`): a burst is a sweep of channels 1-11 with the share heard on all three
    monitors; a partial sweep (each other channel sent or not, even odds) with the share heard
    on two; the recorded channel only with the share heard on one. Drawn once per burst of
    each source address, reproducibly. `hops`: the radio's schedule (default: the live
    driver's jittered one, `_Hops`)."""
    if hops is None:
        hops = _Hops(channels, dwell_s, jitter, seed)  # one radio: the three ways share it
    sweep = hop_radio(channels, dwell_s, sweep=True, step_s=sweeps.step_s, hops=hops)
    single = hop_radio(channels, dwell_s, hops=hops)
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
            if hops.on(s.ts + (c - s.channel) * sweeps.step_s) == c:
                return (_copy_on(s, c),)
        return ()

    return heard


def thinned_radio(keep: float, seed: int = 0) -> Radio_:
    """A fixed radio that hears only `keep` of each phone's bursts (drawn per burst; `seed`:
    which draw): phones that probe less often, or a noisier room; the engine is not told."""
    bursts: dict[bytes, list[float]] = {}
    salt: tuple[object, ...] = ("thin",) if seed == 0 else ("thin", seed)  # 0: the first draw

    def heard(s: Sighting) -> Iterable[Sighting]:
        b = bursts.get(s.address)
        if b is None or s.ts - b[1] > BURST_GAP_S:
            b = bursts[s.address] = [_uniform(*salt, s.address, s.ts), s.ts]
        b[1] = s.ts
        return (s,) if b[0] < keep else ()

    return heard


def shift_radio(db: int) -> Radio_:
    """Every frame's RSSI moved by `db`: the same room heard from a hotter or colder spot."""

    def heard(s: Sighting) -> Iterable[Sighting]:
        return (s if s.rssi is None else dataclasses.replace(s, rssi=s.rssi + db),)

    return heard


class Variant(NamedTuple):
    """One variant of the class days: `make` gives a fresh radio for one replay (a `drawn`
    one takes `seed=`: which of its hopping schedules, or of its draws of lost bursts, it
    runs); `plan` is given to the engine as a live driver gives it, None where the engine
    reads it from the capture (a recording)."""

    name: str
    make: Callable[..., Radio_ | None]
    plan: ChannelPlan | None
    drawn: bool


def esp32_radio(sweeps: Sweeps, seed: int = 0) -> Radio_:
    """The Brno ESP32 sniffer's all-channel scan (`Esp32Scan`) with phones as measured."""
    return measured_radio(Esp32Scan.CHANNELS, 0.055, sweeps, hops=Esp32Scan(seed))


def variants(sweeps: Sweeps) -> list[Variant]:
    """Every variant of the class days (a radio keeps per-burst state, so each replay gets
    its own)."""
    p10 = ChannelPlan(tuple(range(2, 12)), 0.25)

    measured10 = partial(measured_radio, p10.channels, p10.dwell_s, sweeps)
    esp32 = partial(esp32_radio, sweeps)
    out = [Variant("fixed (as recorded)", lambda: None, None, False)]
    for name, chs, dwell in HOP_PLANS:
        out.append(Variant(f"{name}, lower bound", partial(hop_radio, chs, dwell),
                           ChannelPlan(chs, dwell), True))
    for name, chs, dwell in HOP_PLANS:
        out.append(Variant(f"{name}, phones as measured",
                           partial(measured_radio, chs, dwell, sweeps), ChannelPlan(chs, dwell),
                           True))
    # The radio a Brno recording that hops was made with, read as a recording is: the
    # engine learns its channels and dwell from the capture.
    out.append(Variant("ESP32 scan (10 ch, 50 ms), as measured, plan read from the capture",
                       esp32, None, True))
    out += [Variant(f"ESP32 scan, as measured, plan read from the capture, RSSI {db:+d} dB",
                    partial(_shifted, db, esp32), None, True) for db in (-6, 6)]
    out += [Variant(f"RSSI {db:+d} dB", partial(shift_radio, db), None, False)
            for db in (-6, 6)]
    out += [Variant(f"10 ch, 250 ms, as measured, RSSI {db:+d} dB",
                    partial(_shifted, db, measured10), p10, True) for db in (-6, 6)]
    # drawn: which bursts are lost is a draw like a hopping schedule (median over draws)
    out += [Variant(f"{keep:.0%} of the bursts (fixed radio)", partial(thinned_radio, keep),
                    None, True) for keep in (0.8, 0.6)]
    return out


def _shifted(db: int, make: Callable[..., Radio_], seed: int = 0) -> Radio_:
    """A hopping variant's radio (schedule `seed`) hearing every frame `db` hotter."""
    return _chain(shift_radio(db), make(seed=seed))


def _chain(first: Radio_, then: Radio_) -> Radio_:
    def heard(s: Sighting) -> Iterable[Sighting]:
        return [y for x in first(s) for y in then(x)]

    return heard
