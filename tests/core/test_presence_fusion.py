"""BLE + Wi-Fi fusion: the pooled count (W + B) / (1 + r) against max(W, B).

Synthetic worlds that follow the stated model (core/presence/fusion.py): N people, a Wi-Fi
count Poisson(N d_w) and a BLE phone count Poisson(N d_w r). The shared Brno data has no day
where both radios saw the same people, so the effect on real data is not measured (see
docs/presence.md "Fusion" for what it would take).
"""

from __future__ import annotations

import math
import random

from presence_gateway.core.presence.footfall import Footfall, Population
from presence_gateway.core.presence.fusion import MIN_EVIDENCE, RadioFusion


def poisson(rnd: random.Random, lam: float) -> int:
    k, p = 0, math.exp(-lam)
    acc, u = p, rnd.random()
    while u > acc:
        k += 1
        p *= lam / k
        acc += p
    return k


def test_one_radio_is_its_own_count() -> None:
    f = RadioFusion()
    for _ in range(1000):
        f.learn(10, 0)  # Wi-Fi only: nothing to learn
    assert f.ratio is None
    assert f.devices(10, 0) == 10.0 and f.devices(0, 7) == 7.0


def test_before_the_ratio_is_known_the_larger_count_is_taken() -> None:
    f = RadioFusion()
    f.learn(10, 5)
    assert f.sum_wifi < MIN_EVIDENCE and f.devices(10, 5) == 10.0


def test_with_a_learnt_ratio_the_pooled_count_is_the_wifi_equivalent() -> None:
    f = RadioFusion()
    for _ in range(100):
        f.learn(10, 5)  # BLE sees half as many units of the same people
    assert f.ratio is not None and abs(f.ratio - 0.5) < 1e-9
    assert f.devices(10, 5) == 10.0  # (10 + 5) / 1.5
    assert f.devices(12, 3) == 10.0  # a noisy pair averages out
    assert f.pooled(12, 3) == (15.0, 1 / 1.5)
    assert f.devices(12, 0) == 12.0  # a radio hearing nobody: the other alone


def test_pooling_beats_max_and_wifi_alone_when_both_radios_see_the_same_people() -> None:
    rnd = random.Random(16)
    for ratio in (0.5, 1.0):
        f = RadioFusion()
        err = {"pooled": 0.0, "max": 0.0, "wifi": 0.0}
        bias_max = 0.0
        n = 3000
        for i in range(n):
            people = 5 + (i // 100) % 15  # occupancy moving between 5 and 19
            w, b = poisson(rnd, people), poisson(rnd, people * ratio)
            f.learn(w, b)
            if i < 300:  # let it learn r first
                continue
            err["pooled"] += abs(f.devices(w, b) - people)
            err["wifi"] += abs(w - people)
            # max() is right only when both radios see as much: scale BLE to Wi-Fi units
            m = max(w, b / ratio)
            err["max"] += abs(m - people)
            bias_max += m - people
        assert err["pooled"] < 0.9 * err["wifi"]
        assert err["pooled"] < err["max"]
        assert bias_max / (n - 300) > 0.5  # max() reads high on noisy counts


def test_the_footfall_present_and_interval_follow_the_pooled_count() -> None:
    ff = Footfall((), people_per_device=1.0)
    for _ in range(60):
        ff.snapshot(Population(wifi=20, ble=10))  # r = 0.5 learnt from the intervals
    data = ff.snapshot(Population(wifi=24, ble=6))
    assert data["present"] == 20.0  # (24 + 6) / 1.5
    low, high = data["present_interval"]
    # the Poisson count is 30 units worth 1/1.5 each: narrower than 20 Wi-Fi devices alone
    assert low <= 20.0 <= high
    assert high - low < 2 * 1.2816 * math.sqrt(20) * 1.01
