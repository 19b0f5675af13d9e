"""The channel plan a Wi-Fi radio runs, and what it does to the sightings of one phone.

A gateway that hops over n channels, `dwell_s` on each, hears a probe burst sent on one
channel only while it dwells there. The model (docs/presence.md "Channel hopping"):

- A phone's bursts are a Poisson-like stream of rate lambda; a burst sent on channels the
  radio's plan shares with the phone is caught when the radio is on one of them: the catch
  probability of a burst is p = k / n, k the plan's channels the phone was heard on (at least
  1: the fixed-channel variants of the Brno days keep channel-2 frames only, p = 1 / n; a
  phone that sweeps every channel of a scan is soon heard on all n, p -> 1).
- Thinning a Poisson stream by p leaves a Poisson stream of rate p * lambda: every gap grows
  by 1 / p in expectation, so every window the engine judges sightings with (the sighting
  window, the quiet floor of the exit rule, the visit timeout) is stretched by 1 / p for that
  unit. The rhythm exit needs nothing: it learns the gaps the radio actually sees.

A fixed-channel radio (one channel, or no plan known) has p = 1 and the engine is unchanged.

Invariants: pure; `ChannelPlan` is a frozen value the runtime assembly builds from the live
driver's `channels` / `dwell` (or `None` for a recording: `PlanInference` learns it from the
channels the capture's frames were heard on, bounded memory: one slot per channel).
"""

from __future__ import annotations

from dataclasses import dataclass

# 2.4 GHz 1-14 and 5 GHz up to 177 fit in one int bitmask per unit (Python ints are unbounded,
# but channel numbers above 191 do not exist in 802.11 2.4/5 GHz numbering).
_MAX_CHANNEL = 191


def channel_bit(channel: int | None) -> int:
    """The bitmask bit of `channel` (0 when unknown or out of range)."""
    if channel is None or not 0 < channel <= _MAX_CHANNEL:
        return 0
    return 1 << channel


@dataclass(frozen=True, slots=True)
class ChannelPlan:
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

    def stretch(self, heard_mask: int) -> float:
        """1 / p for a unit heard on the channels in `heard_mask`: n / k, k the plan's
        channels among them (at least 1). 1.0 for a fixed radio."""
        n = self.size
        if n == 1:
            return 1.0
        k = (heard_mask & self.mask).bit_count()
        return n / max(1, min(k, n))


FIXED = ChannelPlan()


class PlanInference:
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
