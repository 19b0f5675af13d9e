"""The radio models behind the people-count variants (bench/radio_variants.py).

What bench/presence_accuracy.py reports for a hopping or shifted gateway is only as honest as
these maps from a recorded frame to what another radio would have heard: scapy builds the
probe requests, the project's parser reads them, and each model is checked against its
definition. The sweep shares are measured on the shared probing_patterns captures (GPL-3.0,
read from ../shared; skipped when absent).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dot11 import Dot11, Dot11Elt, Dot11ProbeReq, RadioTap
from scapy.packet import Packet

from bench.presence_accuracy import measure_sweeps
from bench.radio_variants import (
    Esp32Scan,
    Sweeps,
    _Hops,
    esp32_radio,
    hop_radio,
    measured_radio,
    shift_radio,
    thinned_radio,
)
from presence_gateway.core.model import AddressKind, Observation, Radio, Sighting
from presence_gateway.core.presence.grouping import _on_channel
from presence_gateway.core.wifi.frames import parse_record

WIFI = Path(__file__).resolve().parents[2] / "shared" / "data" / "captures" / "wifi"
PATTERNS = WIFI / "probing_patterns"
BRNO = WIFI / "brno_sc6-61"
PLAN = (2, 6, 11)


def probe(ts: float, mac: str = "02:11:22:33:44:55", channel: int = 2,
          sent: int | None = None) -> Sighting:
    """A probe request sent on `sent` (DS parameter set; default `channel`) and heard on
    `channel`, parsed."""
    sent = channel if sent is None else sent
    frame: Packet = (RadioTap(present="Channel+dBm_AntSignal", ChannelFrequency=2407 + 5 * channel,
                              dBm_AntSignal=-60)
                     / Dot11(type=0, subtype=4, addr1="ff:ff:ff:ff:ff:ff", addr2=mac,
                             addr3="ff:ff:ff:ff:ff:ff")
                     / Dot11ProbeReq() / Dot11Elt(ID=0, info=b"")
                     / Dot11Elt(ID=1, info=b"\x02\x04\x0b\x16")
                     / Dot11Elt(ID=3, info=bytes([sent])))
    s = parse_record(bytes(frame), 127, ts, "bench")
    assert isinstance(s, Sighting) and s.channel == channel
    assert s.fields["ds_channel"] == sent
    return s


def test_the_lower_bound_keeps_a_frame_only_while_the_radio_dwells_on_its_channel() -> None:
    radio = hop_radio(PLAN, 0.25, jitter=False)
    # the radio is on 2 during [0, 0.25) of each 0.75 s cycle (phase 0 at the epoch)
    assert list(radio(probe(1500.1))) != []
    assert list(radio(probe(1500.3))) == []  # on 6
    assert list(radio(probe(1500.6))) == []  # on 11


def test_a_sweeping_phones_copy_is_heard_on_the_radios_channel_with_its_own_ds_set() -> None:
    radio = hop_radio(PLAN, 0.25, sweep=True, step_s=0.02, jitter=False)
    # at 1500.3 the radio is on 6; the scan reaches 6 at +4 x 20 ms: heard there
    (copy,) = radio(probe(1500.3))
    assert copy.channel == 6
    assert copy.fields["ds_channel"] == 6 and copy.fields["freq"] == 2437
    assert copy.rssi == -60 and copy.ts == 1500.3


def test_an_off_channel_frame_stays_off_channel_on_the_hoppers_channel() -> None:
    # The Brno sniffer on 2 heard most probes sent on 1 (DS set 1), at the RSSI the adjacent
    # channel's filter leaves: the hopper on 6 hears the copy sent on 5 the same way, so the
    # grouper still does not read its RSSI as distance (grouping.py `_on_channel`).
    radio = hop_radio(PLAN, 0.25, sweep=True, step_s=0.02, jitter=False)
    (copy,) = radio(probe(1500.3, sent=1))
    assert copy.channel == 6 and copy.fields["ds_channel"] == 5
    assert not _on_channel(Observation(ts=copy.ts, radio=Radio.WIFI, device="d",
                                       address_kind=AddressKind.RANDOM, rssi=copy.rssi,
                                       channel=copy.channel, kind=copy.kind, fields=copy.fields))


def test_the_jittered_radio_is_not_in_step_with_a_device_on_a_fixed_interval() -> None:
    # The live driver's dwell (jittered_dwell): each channel still gets its share of the time,
    # but a device probing every 60.00 s (the Brno lab's PCs) is no longer caught always or
    # never: a fixed 10 x 100 ms cycle divides 60 s, so its phase repeats.
    plan = tuple(range(2, 12))
    frames = [probe(1700.0 + 60.0 * i + 0.123) for i in range(400)]
    fixed = [bool(list(hop_radio(plan, 0.1, jitter=False)(f))) for f in frames]
    radio = hop_radio(plan, 0.1)
    jittered = [bool(list(radio(f))) for f in frames]
    assert len(set(fixed)) == 1  # always or never, the same phase every time
    assert 0.05 < sum(jittered) / len(jittered) < 0.15  # about one burst in ten
    again = hop_radio(plan, 0.1)
    assert jittered == [bool(list(again(f))) for f in frames]  # reproducible
    hops = _Hops(plan, 0.1)
    on = [hops.on(1700.0 + 0.001 * k) for k in range(200_000)]
    shares = [on.count(c) / len(on) for c in plan]
    assert all(0.08 < x < 0.12 for x in shares)
    steps = [b - a for a, b in zip(hops._ends, hops._ends[1:], strict=False)]
    assert min(steps) >= 0.075 - 1e-9 and max(steps) <= 0.125 + 1e-9
    assert abs(sum(steps) / len(steps) - 0.1) < 0.005


def test_measured_radio_is_reproducible_and_follows_its_shares() -> None:
    frames = [probe(1000.0 + 40.0 * i + 0.013 * i, mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")
              for i in range(600)]
    all_sweep = measured_radio(PLAN, 0.25, Sweeps((1.0, 0.0, 0.0), 0.02))
    never = measured_radio(PLAN, 0.25, Sweeps((0.0, 0.0, 1.0), 0.02))
    lower = hop_radio(PLAN, 0.25)
    sweep = hop_radio(PLAN, 0.25, sweep=True, step_s=0.02)
    assert [list(all_sweep(f)) for f in frames] == [list(sweep(f)) for f in frames]
    assert [list(never(f)) for f in frames] == [list(lower(f)) for f in frames]
    mixed = Sweeps((0.5, 0.25, 0.25), 0.02)
    heard = [len(list(measured_radio(PLAN, 0.25, mixed)(f))) for f in frames]
    again = [len(list(measured_radio(PLAN, 0.25, mixed)(f))) for f in frames]
    assert heard == again
    # between the lower bound (~1/3) and every burst sweeping
    caught_sweep = sum(len(list(sweep(f))) for f in frames)
    caught_lower = sum(len(list(lower(f))) for f in frames)
    assert caught_lower < sum(heard) < caught_sweep


def test_fewer_bursts_drops_whole_bursts_and_a_shift_moves_rssi() -> None:
    thin = thinned_radio(0.5)
    kept = [bool(list(thin(probe(2000.0 + 30.0 * i + d, mac=f"02:00:00:00:00:{i:02x}"))))
            for i in range(200) for d in (0.0, 0.1)]
    bursts = list(zip(kept[::2], kept[1::2], strict=True))
    assert all(a == b for a, b in bursts)  # a burst is kept or dropped whole
    assert 0.35 < sum(a for a, _ in bursts) / len(bursts) < 0.65
    # each seed is another draw of the lost bursts (the bench's median over draws), the same
    # draw on every run
    def draw(seed: int) -> list[bool]:
        radio = thinned_radio(0.5, seed=seed)
        return [bool(list(radio(probe(2000.0 + 30.0 * i, mac=f"02:00:00:00:00:{i:02x}"))))
                for i in range(200)]
    assert draw(0) == [a for a, _ in bursts] and draw(1) == draw(1)
    assert draw(1) != draw(0) and 0.35 < sum(draw(1)) / 200 < 0.65
    (hot,) = shift_radio(6)(probe(2000.0))
    assert hot.rssi == -54


@pytest.mark.skipif(not PATTERNS.is_dir(), reason="../shared probing_patterns captures absent")
def test_phones_bursts_as_measured_on_the_probing_patterns_captures() -> None:
    sweeps = measure_sweeps(PATTERNS)
    full, two, one = sweeps.shares
    assert full + two + one == pytest.approx(1.0)
    assert full > 0.7 and one < 0.1  # phones sweep: most bursts on all three monitors
    assert 0.01 < sweeps.step_s < 0.04


def test_the_esp32_scan_runs_the_firmwares_loop() -> None:
    # channels 1-9 for 50 ms, 10 for 100 ms (tagged 2-11), a fixed 550 ms cycle
    scan = Esp32Scan(seed=3)
    ms: dict[int, int] = {}
    for i in range(5500):  # ten cycles, 1 ms apart
        c = scan.on(7000.0 + i / 1000)
        ms[c] = ms.get(c, 0) + 1
    assert sorted(ms) == list(range(2, 12))
    assert all(abs(ms[c] - 500) <= 10 for c in range(2, 11)) and abs(ms[11] - 1000) <= 10
    assert Esp32Scan(seed=3).on(7000.123) == scan.on(7000.123)  # reproducible
    assert any(Esp32Scan(seed=s).on(7000.0) != scan.on(7000.0) for s in range(4))  # phases


@pytest.mark.skipif(not BRNO.is_dir(), reason="../shared Brno captures absent")
def test_the_brno_sniffers_tag_each_frame_one_channel_above_where_it_was_sent() -> None:
    # The firmware writes channels[rx_ctrl.channel] from a table starting at 2412 MHz. The
    # hopping day: every frame with a DS set is tagged above it (mostly by one). The fixed
    # days "on channel 2": DS 1 is heard far more than DS 2, DS 3 almost never (a radio on 2
    # would hear 1 and 3 alike): it was on channel 1.
    from bench.presence_accuracy import observations

    def diffs(day: str) -> dict[int, int]:
        out: dict[int, int] = {}
        for _, obs in observations(BRNO / f"position_1_sc6-61_{day}_anonymized.pcap"):
            ds = obs.fields.get("ds_channel")
            if isinstance(ds, int) and obs.channel is not None:
                out[obs.channel - ds] = out.get(obs.channel - ds, 0) + 1
        return out

    hopping = diffs("2023-04-17")
    assert min(hopping) >= 1 and max(hopping, key=lambda k: hopping[k]) == 1
    # Read as a recording, its plan is the ten tags; its dwell stays unknown: one of its three
    # devices climbs the channels with the radio, so every close pair switches (dwell.py)
    from presence_gateway.core.presence.config import PresenceSettings
    from presence_gateway.core.presence.sessions import PresenceEngine

    eng = PresenceEngine(PresenceSettings(), gateway_id="bench", store_id="lab", plan=None)
    for _, obs in observations(BRNO / "position_1_sc6-61_2023-04-17_anonymized.pcap"):
        eng.feed(obs)
    (plan,) = eng.wifi_plans.values()
    assert plan["channels"] == list(range(2, 12)) and plan["dwell_s"] is None
    fixed = diffs("2023-02-16")
    assert fixed.get(1, 0) > 10 * fixed.get(0, 0) and fixed.get(-1, 0) < 10


@pytest.mark.skipif(not (PATTERNS.is_dir() and BRNO.is_dir()),
                    reason="../shared captures absent")
def test_a_recording_of_the_esp32_scan_is_read_with_its_dwell() -> None:
    # 02-16 as the ESP32 scan would have heard it, read as a recording: the engine is told
    # nothing, learns channels 2-11 from the tags and a dwell near the firmware's 50 ms, and
    # caps a sweeping phone's catch at what that timing catches.
    from bench.presence_accuracy import observations
    from presence_gateway.core.presence.config import PresenceSettings
    from presence_gateway.core.presence.sessions import PresenceEngine

    eng = PresenceEngine(PresenceSettings(), gateway_id="bench", store_id="lab", plan=None)
    radio = esp32_radio(measure_sweeps(PATTERNS))
    for _, obs in observations(BRNO / "position_1_sc6-61_2023-02-16_anonymized.pcap",
                               radio=radio):
        eng.feed(obs)
    (plan,) = eng.wifi_plans.values()
    assert plan["channels"] == list(range(2, 12)) and plan["learnt"] is True
    dwell = plan["dwell_s"]
    assert isinstance(dwell, float) and 0.035 <= dwell <= 0.07
    assert isinstance(plan["sweep_catch"], float) and plan["sweep_catch"] < 0.8
