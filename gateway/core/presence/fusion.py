"""BLE + Wi-Fi fusion: people from two radios that see the same people.

A phone that advertises (BLE) and probes (Wi-Fi) is a unit on each radio, and its random
addresses on the two radios share nothing on air, so the two counts cannot be matched unit by
unit. Taking the larger count (the old rule) is biased high whenever both counts are noisy
(E[max(W, B)] > max(E[W], E[B])) and throws the smaller radio's information away.

The model (docs/presence.md "Fusion"): N people in the store; the Wi-Fi count is Poisson with
mean N d_w (d_w = 1 / `people_per_device`, devices per person, the calibrated constant) and
the BLE phone count is Poisson with mean N d_w r, r the store's BLE-to-Wi-Fi ratio (how many
BLE phone units it sees per Wi-Fi unit of the same people). Given r, the maximum-likelihood N
from both counts is

    N = (W + B) / (d_w (1 + r))   i.e.   present = (W + B) * people_per_device / (1 + r)

the pooled count: with r = 1 it is the mean of the two, with B = 0 and r = 0 the Wi-Fi count,
and its Poisson variance is N / (d_w (1 + r)), (1 + r) times smaller than Wi-Fi's alone.
r is learnt from the store's own intervals: the ratio of the two radios' summed counts over
the intervals where both heard someone, with exponential forgetting (half-life
`RATIO_HALF_LIFE` intervals), so no per-store tuning; until `MIN_EVIDENCE` Wi-Fi units have
been summed, and whenever one radio hears nobody (not installed, or a store where only one
radio sees its visitors), the larger count is used as before.

Limits: r is a ratio of devices, so it folds in BLE's own detection (iPhones advertise
Continuity all the time, many Android phones only sometimes); a consented identity links one
phone's two units exactly but is not used here (too rare to matter for a count).

Invariants: pure; state is two floats and a counter.
"""

from __future__ import annotations

from presence_gateway.core.state import Snapshotted

RATIO_HALF_LIFE = 1440.0  # intervals: one day of 1 min footfall
MIN_EVIDENCE = 200.0  # summed Wi-Fi units (e.g. 10 devices for 20 min) before r is trusted
_DECAY = 0.5 ** (1.0 / RATIO_HALF_LIFE)


class RadioFusion(Snapshotted):
    """devices(wifi, ble) -> the device count behind `present`, in Wi-Fi units."""

    __slots__ = ("sum_ble", "sum_wifi")

    def __init__(self) -> None:
        self.sum_wifi = 0.0
        self.sum_ble = 0.0

    @property
    def ratio(self) -> float | None:
        """r, BLE phone units per Wi-Fi unit of the same people; None until learnt."""
        if self.sum_wifi < MIN_EVIDENCE or self.sum_ble <= 0.0:
            return None
        return self.sum_ble / self.sum_wifi

    def learn(self, wifi: int, ble: int) -> None:
        """One interval's store-wide counts (called once per footfall interval)."""
        if wifi > 0 and ble > 0:
            self.sum_wifi = self.sum_wifi * _DECAY + wifi
            self.sum_ble = self.sum_ble * _DECAY + ble

    def devices(self, wifi: float, ble: int) -> float:
        """Wi-Fi-equivalent devices: (W + B) / (1 + r) when r is known and both radios hear
        someone, else the larger count."""
        r = self.ratio
        if r is None or wifi == 0 or ble == 0:
            return float(max(wifi, ble))
        return (wifi + ble) / (1.0 + r)

    def pooled(self, wifi: float, ble: int) -> tuple[float, float]:
        """(the device count the uncertainty model reads as a Poisson count, and what one of
        them is worth in Wi-Fi-equivalent devices): (W + B, 1 / (1 + r)) when pooled."""
        r = self.ratio
        if r is None or wifi == 0 or ble == 0:
            return float(max(wifi, ble)), 1.0
        return float(wifi + ble), 1.0 / (1.0 + r)
