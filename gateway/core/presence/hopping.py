"""The channel plan a Wi-Fi radio runs, and what it does to the sightings of one phone.

A gateway that hops over n channels, `dwell_s` on each, hears a probe burst sent on one
channel only while it dwells there. The model (docs/presence.md "Channel hopping"):

- A phone's bursts are a Poisson-like stream of rate lambda; a burst is caught when the radio
  is on one of the channels the phone probes on: the catch probability of a burst is
  p = m / n, m of the plan's n channels probed by the phone (`CatchModel`: m estimated from
  the distinct channels it was heard on; the fixed-channel variants of the Brno days keep
  channel-2 frames only, p = 1 / n; a phone that sweeps every channel of a scan, p is the
  share of its 0.2 s scans the plan's timing catches, `sweep_catch`: 0.74 for 1/6/11 at
  250 ms, 0.94 for 1-10 at 250 ms).
- Thinning a Poisson stream by p leaves a Poisson stream of rate p * lambda: every gap grows
  by 1 / p in expectation, so every window the engine judges sightings with (the sighting
  window, the quiet floor of the exit rule, the visit timeout, the weak rule's time) is
  stretched by 1 / p for that unit, and the evidence asked of it (`min_sightings` readings,
  and as many strong ones) is scaled by p, at least one reading: a one-off frame is thinned
  by p too. The rhythm exit needs nothing: it learns the gaps the radio actually sees.
- The walk-in and weak rules judge a unit's strongest readings, and the strongest of c readings
  is expected lower than the strongest of the c / p a fixed radio would have had:
  `peak_relief` (sigma (E[max of c / p] - E[max of c]), sigma the spread of one reading) is
  added to its smoothed RSSI for those two rules once it has OWN_READINGS bursts of its own.

A fixed-channel radio (one channel, or no plan known) has p = 1 and the engine is unchanged.

Invariants: pure; `ChannelPlan` is a frozen value the runtime assembly builds from the live
driver's `channels` / `dwell` (or `None` for a recording, or several radios with different
plans: `RadioPlans` then learns each sensor's plan with `PlanInference` from the channels its
frames were heard on, and its dwell with `dwell.DwellInference`). Bounded memory: one slot
per channel and a gap histogram (until the dwell settles) per sensor, at most `MAX_SENSORS`
sensors learnt (more read as fixed radios).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from presence_gateway.core.presence.dwell import DwellInference
from presence_gateway.core.state import Snapshotted, restored

# 2.4 GHz 1-14 and 5 GHz up to 177 fit in one int bitmask per unit (Python ints are unbounded,
# but channel numbers above 191 do not exist in 802.11 2.4/5 GHz numbering).
_MAX_CHANNEL = 191


def channel_bit(channel: int | None) -> int:
    """The bitmask bit of `channel` (0 when unknown or out of range)."""
    if channel is None or not 0 < channel <= _MAX_CHANNEL:
        return 0
    return 1 << channel


@dataclass(frozen=True, slots=True)
class ChannelPlan(Snapshotted):
    """The channels a radio dwells on in turn; one channel (or none) is a fixed radio."""

    channels: tuple[int, ...] = ()
    dwell_s: float = 0.0

    @property
    def size(self) -> int:
        return max(1, len(set(self.channels)))

    @property
    def mask(self) -> int:
        m = 0
        for c in self.channels:
            m |= channel_bit(c)
        return m

    @property
    def duty(self) -> float:
        """The share of time the radio spends on any one of its channels."""
        return 1.0 / self.size

    def heard_on(self, heard_mask: int) -> int:
        """How many of the plan's channels a unit was heard on (at least 1)."""
        return max(1, min((heard_mask & self.mask).bit_count(), self.size))


FIXED = ChannelPlan()

_NORMAL = NormalDist()


def expected_max(n: float) -> float:
    """E[max] of n standard normal readings (Blom's approximation; 0 for one reading)."""
    if n <= 1.0:
        return 0.0
    return _NORMAL.inv_cdf((n - 0.375) / (n + 0.25))


@lru_cache(maxsize=4096)
def peak_relief(readings: int, stretch: float, sigma_db: float) -> float:
    """How many dB lower the strongest of `readings` readings is expected to be than the
    strongest of the `readings * stretch` a fixed radio would have had in the same time:
    the walk-in and weak rules judge a unit's peak, and a radio that hears 1 / p fewer
    readings sees a lower one (sigma_db: the spread of one reading)."""
    if stretch <= 1.0 or readings < 1:
        return 0.0
    return sigma_db * (expected_max(readings * stretch) - expected_max(readings))

# Readings before a unit's own channels say how many channels it probes on; until then the
# store's running estimate stands in (one reading is on one channel either way, two barely
# tell a sweeping phone from one that probes on one channel).
OWN_READINGS = 3


def channels_probed(k: int, readings: int, n: int) -> int:
    """The number m of the plan's n channels a phone probes on, from k distinct channels
    among `readings` caught bursts: each caught burst lands on one of its m channels, so
    after c bursts it is expected on m (1 - (1 - 1/m)^c) distinct ones; m is the fewest
    channels whose expectation reaches k (a moment estimate, on the side of fewer channels:
    longer windows), n when none does (a new channel at every burst so far: a phone that
    sweeps them all)."""
    for m in range(max(1, k), n + 1):
        if m * (1.0 - (1.0 - 1.0 / m) ** readings) >= k - 1e-9:
            return m
    return n


# A phone heard on two or more channels is read as one that sweeps the plan (phones' active
# scans do: 79 % of bursts on probing_patterns) unless so few distinct channels in so many
# bursts would be unlikely for a sweeper: below this probability the moment estimate stands.
SWEEP_TEST = 0.05


@lru_cache(maxsize=4096)
def few_channels_odds(k: int, readings: int, n: int) -> float:
    """P(at most k distinct channels among `readings` caught bursts | the phone sweeps all n):
    each caught burst lands on the channel the radio happens to be on, uniform over the plan
    (bursts a minute apart, a cycle of a few seconds). The occupancy distribution, by
    dynamic programming over the bursts (capped: past 64 bursts the answer is ~0 anyway)."""
    readings = min(readings, 64)
    dist = [1.0] + [0.0] * n  # dist[j]: P(j distinct so far)
    for _ in range(readings):
        nxt = [0.0] * (n + 1)
        for j, pj in enumerate(dist):
            if pj:
                nxt[j] += pj * j / n
                if j < n:
                    nxt[j + 1] += pj * (n - j) / n
        dist = nxt
    return sum(dist[: k + 1])


# A hopping radio dwells on each channel for a time drawn per step from [1 - HOP_JITTER,
# 1 + HOP_JITTER] x dwell_s (the live driver, drivers/wifi_monitor.py): the same share of time
# on every channel, but no fixed cycle. Devices that probe at a fixed interval (the Brno lab's
# PCs: every 60.00 s, +-0.2) are otherwise in step with a radio whose cycle divides it: a
# 10 x 100 ms plan then catches such a device at the same phase of its cycle every time,
# always or never for many minutes, which the catch model (it averages over the phase,
# `sweep_catch`) cannot see.
HOP_JITTER = 0.25


def jittered_dwell(dwell_s: float, u: float) -> float:
    """One hop's dwell for a uniform draw `u` in [0, 1): mean `dwell_s`."""
    return dwell_s * (1.0 + HOP_JITTER * (2.0 * u - 1.0))


# How phones send a probe burst, measured on the probing_patterns captures (three monitors on
# channels 1, 6 and 11, one phone per file, 224 bursts of 7 phones; bench/presence_accuracy.py
# `measure_sweeps`): 79 % of the bursts are heard on all three channels (a sweep), and a scan
# visits channel 1, 2, 3, ... in turn, SWEEP_STEP_S on each (the median of |t6 - t1| / 5 and
# |t11 - t6| / 5: 20 ms).
SWEEP_STEP_S = 0.02
_PHASES = 400


def sweep_catch(plan: ChannelPlan, step_s: float = SWEEP_STEP_S) -> float:
    """The share of full sweeps a radio running `plan` catches: the scan is on channel c during
    [(c - 1) step_s, c step_s) after it starts (two probes per channel, as the Brno captures
    show: a median burst of 2 frames within 23 ms on one channel); it is caught when the radio
    is on some plan channel c in that span. Averaged over the scan's start within the radio's
    cycle (phones and radios are not in step: the live driver's jittered dwell sees to it,
    HOP_JITTER). 1 when the dwell is not known (a learnt plan before dwell.py reads it)
    or for one channel; less when the radio often leaves a channel before the scan reaches
    the plan's next one (2/6/11 at 250 ms: it moves 11 -> 2 while the scan is still short of
    11)."""
    n = len(plan.channels)
    if n <= 1 or plan.dwell_s <= 0.0:
        return 1.0
    cycle, dwell = n * plan.dwell_s, plan.dwell_s
    caught = 0
    for i in range(_PHASES):
        start = cycle * i / _PHASES
        for c in set(plan.channels):
            t = start + (c - 1) * step_s
            if c in (plan.channels[int(t // dwell) % n],
                     plan.channels[int((t + 0.99 * step_s) // dwell) % n]):
                caught += 1
                break
    return caught / _PHASES


class CatchModel(Snapshotted):
    """p, the probability that the plan's radio catches one of a phone's probe bursts: m / n,
    m the channels the phone probes on (`channels_probed`), at most `sweep_p`, the share of
    sweeps the plan's timing catches (`sweep_catch`: a phone on every channel is still
    missed when the radio leaves a channel before the scan reaches its next one). A phone
    probing on one channel (the lower-bound variants of the Brno days) has p = 1 / n; one
    that sweeps every channel in each scan (phones' active scans do; the hopping 04-17 day
    hears one device's scan on channels 2, 4 and 6 within 0.2 s) has p = `sweep_p`. A unit
    with fewer than OWN_READINGS bursts gets the store's running mean of the units' own
    estimates, starting at 1 / n."""

    __slots__ = ("learnt", "mean_p", "plan", "sweep_p")

    def __init__(self, plan: ChannelPlan) -> None:
        self.plan = plan
        self.mean_p = plan.duty
        self.learnt = 0
        self.sweep_p = sweep_catch(plan)

    def p(self, heard_mask: int, readings: int) -> float:
        n = self.plan.size
        if n == 1:
            return 1.0
        if readings < OWN_READINGS:
            return self.mean_p
        k = self.plan.heard_on(heard_mask)
        if k >= 2 and few_channels_odds(k, readings, n) >= SWEEP_TEST:
            return self.sweep_p  # a sweeper until the channels say otherwise
        return min(channels_probed(k, readings, n) / n, self.sweep_p)

    def learn(self, p: float) -> None:
        """A unit's own estimate (taken once, at OWN_READINGS readings): a running mean over
        the first 20 units, then an exponential one (the store's phones change over a day)."""
        self.learnt += 1
        self.mean_p += (p - self.mean_p) * max(0.05, 1.0 / (self.learnt + 1))


class PlanInference(Snapshotted):
    """The plan of a recording, from the channels its frames were heard on: a radio tags each
    frame with the channel it was tuned to, so a fixed sniffer's capture shows one channel
    and a hopper's shows its plan. A channel counts once it has `min_frames` frames (a stray
    adjacent-channel tag does not make a fixed sniffer a hopper)."""

    __slots__ = ("_counts", "min_frames", "plan")

    def __init__(self, min_frames: int = 3) -> None:
        self.min_frames = min_frames
        self._counts: dict[int, int] = {}  # channel -> frames (at most _MAX_CHANNEL entries)
        self.plan = FIXED

    def observe(self, channel: int | None) -> ChannelPlan | None:
        """Count a frame's channel; returns the new plan when it changed, else None."""
        if channel is None or not channel_bit(channel):
            return None
        c = self._counts.get(channel, 0) + 1
        self._counts[channel] = c
        if c != self.min_frames:
            return None
        chans = tuple(sorted(k for k, v in self._counts.items() if v >= self.min_frames))
        if len(chans) <= len(self.plan.channels):
            return None
        self.plan = ChannelPlan(chans)
        return self.plan


MAX_SENSORS = 256


class _SensorPlan(Snapshotted):
    """One sensor's plan and catch model (`size` cached: read on every Wi-Fi frame); a learnt
    one also learns its radio's dwell (`hops`, None once settled or when given)."""

    __slots__ = ("catch", "hops", "inference", "known", "plan", "size")

    def __init__(self, plan: ChannelPlan = FIXED, learn: bool = False) -> None:
        self.inference = PlanInference()
        self.hops: DwellInference | None = DwellInference() if learn else None
        self.known: set[int] = set(plan.channels)  # channels settled into the plan
        self.set(plan)

    def set(self, plan: ChannelPlan) -> None:
        self.plan = plan
        self.size = plan.size
        self.catch = CatchModel(plan)

    def set_dwell(self, dwell_s: float) -> None:
        """The learnt dwell: the sweep catch follows; the store's running p carries on."""
        self.plan = ChannelPlan(self.plan.channels, dwell_s)
        self.catch.plan = self.plan
        self.catch.sweep_p = sweep_catch(self.plan)

    def __setstate__(self, state: object) -> None:
        attrs = restored(state)
        super().__setstate__(attrs)
        if "hops" not in attrs:  # a snapshot older than dwell learning: no dwell learnt
            self.hops = None


class RadioPlans(Snapshotted):
    """The plan and catch model behind each sensor's frames: the one `given` for every sensor
    (a live radio's), or learnt per sensor from the channels its frames were tagged with (a
    recording; radios with different plans: each sensor is one radio)."""

    __slots__ = ("_given", "_learnt", "max_size")

    def __init__(self, given: ChannelPlan | None) -> None:
        self._given = None if given is None else _SensorPlan(given)
        self._learnt: dict[str, _SensorPlan] = {}
        self.max_size = 1 if given is None else given.size  # the longest stretch: n

    @property
    def given(self) -> ChannelPlan | None:
        return None if self._given is None else self._given.plan

    def heard(self, sensor: str, channel: int | None, ts: float) -> _SensorPlan:
        """The plan a frame of `sensor` on `channel` at `ts` was caught under (learning it).
        On the hot path: a settled channel costs a dict and a set lookup (and, until the
        dwell is settled, a histogram slot)."""
        if self._given is not None:
            return self._given
        sp = self._learnt.get(sensor)
        if sp is None:
            if len(self._learnt) >= MAX_SENSORS:
                return _FIXED_PLAN
            sp = self._learnt[sensor] = _SensorPlan(learn=True)
        if channel is None:
            return sp
        hops = sp.hops
        if hops is not None and sp.size > 1:  # a fixed radio's frames say nothing of a dwell
            dwell = hops.observe(ts, channel)
            if dwell is not None:
                sp.set_dwell(dwell)
                if hops.settled:
                    sp.hops = None
        if channel in sp.known:
            return sp
        plan = sp.inference.observe(channel)
        if plan is not None:
            sp.known = set(plan.channels)
            sp.set(ChannelPlan(plan.channels, sp.plan.dwell_s))  # a dwell learnt stays
            self.max_size = max(self.max_size, plan.size)
        return sp

    def describe(self) -> dict[str, dict[str, object]]:
        """Each hopping sensor's plan as the engine corrects for it (gateway stats: what a
        recording's radio was read as): channels, dwell (None: not known yet), learnt or
        given, and the share of a phone's sweeps it catches."""
        plans = {"*": self._given} if self._given is not None else self._learnt
        return {sensor: {"channels": list(sp.plan.channels),
                         "dwell_s": round(sp.plan.dwell_s, 3) if sp.plan.dwell_s > 0 else None,
                         "learnt": self._given is None,
                         "sweep_catch": round(sp.catch.sweep_p, 2)}
                for sensor, sp in sorted(plans.items()) if sp.size > 1}

    def plan_of(self, sensor: str) -> ChannelPlan:
        if self._given is not None:
            return self._given.plan
        sp = self._learnt.get(sensor)
        return FIXED if sp is None else sp.plan


_FIXED_PLAN = _SensorPlan()
