"""The `presence` section of the config: signal model, zones, visits, footfall, arbitration.

Read through the shared Reader so errors name file, key and line like every other section.

Invariants:
- `read` always returns a complete `PresenceSettings`; problems go to the Reader's error list.
- There is always at least one zone: with none configured, one zone named "store" covers every
  sensor and accepts any signal, so a fresh install emits visits without any zone tuning.
- Every default below is chosen for a single gateway in a small shop and is also the one
  configuration measured on the Brno lab captures (docs/presence.md); no default is tuned per day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from presence_gateway.core.yamlread import Reader

# Why these defaults (see docs/presence.md for the long form):
# - Kalman noise: phone RSSI jitters ~4-6 dB between frames (multipath, body), so R = 25 dB^2;
#   a person walking changes the mean by at most ~1 dB/s, so Q = 1 dB^2 per second.
# - Reference power at 1 m: iBeacon's convention is -59 dBm for BLE; Wi-Fi phones transmit
#   probes at ~15 dBm and read about -45 dBm at 1 m on a Pi's dongle.
# - Path-loss exponent 2.5: between free space (2) and a furnished shop (3).
_DEFAULT_ZONE_NAME = "store"


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """A zone is covered by some sensors and entered above a signal level, left below another.

    `sensors` empty means every sensor of this gateway. Thresholds are smoothed RSSI in dBm;
    `enter_distance_m` / `leave_distance_m`, when set, are converted to RSSI with the zone's
    path-loss exponent and the radio's reference power (see tracker.ZoneModel).
    """

    name: str
    sensors: tuple[str, ...] = ()
    enter_rssi: float = -200.0
    leave_rssi: float = -200.0
    enter_distance_m: float | None = None
    leave_distance_m: float | None = None
    min_confirm_s: float = 0.0
    path_loss_exponent: float = 2.5


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    # --- the two fields the gateway spine relies on -----------------------------
    visit_timeout_s: float = 300.0
    stats_interval_s: float = 60.0
    # --- signal -------------------------------------------------------------------------
    zones: tuple[ZoneSettings, ...] = (ZoneSettings(_DEFAULT_ZONE_NAME),)
    kalman_process_noise: float = 1.0  # dB^2 per second of drift
    kalman_measurement_noise: float = 25.0  # dB^2 per reading
    ref_power_ble: float = -59.0  # dBm at 1 m when the advert carries no measured power
    ref_power_wifi: float = -45.0
    outlier_db: float = 25.0  # a reading this far from the estimate is dropped once
    min_sightings: int = 2  # sightings within the window before a device counts
    sighting_window_s: float = 120.0
    # --- visits ---------------------------------------------------------------------------
    dwell_marks_s: tuple[float, ...] = (60.0, 300.0, 900.0)
    walkin_min_s: float = 300.0  # seen at least this long ...
    walkin_min_rssi: float = -70.0  # ... and this strong on min_sightings readings -> a visitor
    # Counting is not classifying: a device strong enough on min_sightings readings is in the
    # store NOW and counts in `present` once it has been heard for `walkin_count_s`, without
    # waiting walk_in.min_time (which still decides visitor vs passer-by: entries, capture
    # rate, visit events). The short wait skips a lone scan burst (frames < 5 s apart): a
    # freshly randomized address bursts once before the grouper can link it. 1 min is one idle
    # probe interval; 5-90 s all measure alike on Brno (docs/presence.md).
    walkin_count_s: float = 60.0
    # Exit from the device's own rhythm: a unit stops counting in `present` once it has been
    # silent for `exit_rhythm_factor` times its usual interval between bursts (a running mean
    # of its gaps), but never sooner than `exit_min_quiet_s`. A phone probing every 60 s that
    # misses three bursts in a row has most likely left; `visit_timeout` stays the upper bound
    # (the visit itself ends only then, so a phone that just went quiet keeps its visit).
    # 3 intervals: one missed burst is common (channel hopping, body shadowing), three in a
    # row rarely are. The floor of 2 min stops a phone in an active scan (bursts every few
    # seconds) from dropping out when it merely switches to its idle rhythm.
    exit_rhythm_factor: float = 3.0
    # Heard through a wall: a unit whose smoothed RSSI has never come within `weak_margin_db`
    # above walk_in.min_rssi (the near edge of the zone) after `weak_max_presence_s` of its
    # visit is in a neighbouring room or the corridor, and stops counting in `present` until
    # it comes nearer. Visitors move: in half an hour inside, a visitor passes closer to the
    # sensor than the zone edge; a device behind a wall stays weak AND steady. 6 dB is the
    # zones' enter/leave gap (1.5 sigma of the smoothed jitter). Its visit and events are kept.
    # Judged on the peak smoothed RSSI, not a percentile or a count of near readings: seated
    # visitors come near once (taking a seat) and then stay weak, so robust statistics drop
    # real people; measured worse on Brno 02-28 (1.46-2.72 vs 1.43 MAE, docs/presence.md).
    weak_max_presence_s: float = 1800.0
    weak_margin_db: float = 6.0
    exit_min_quiet_s: float = 120.0
    fixture_max_presence_s: float = 4 * 3600.0  # present longer than this in a day -> fixture
    # A device with a public (never randomized) address may be given a shorter limit: phones
    # randomize, fixed PCs, tills, printers and TVs do not. Off (= the limit above) by default:
    # see docs/presence.md for why it is not a safe default.
    fixture_public_max_presence_s: float = 4 * 3600.0
    fixture_ids: frozenset[str] = field(default_factory=frozenset)
    # --- footfall -------------------------------------------------------------------------
    footfall_interval_s: float = 60.0
    people_per_device: float = 0.8
    footfall_smoothing_s: float = 0.0  # `present` = median over this trailing window (0: off)
    # --- several gateways -------------------------------------------------------------------
    stickiness_margin_db: float = 4.0
    summary_interval_s: float = 5.0
    # --- memory -------------------------------------------------------------------------------
    max_devices: int = 200_000
    # Per-sensor RSSI correction in dB, added to every reading of that sensor before smoothing
    # (from `presence-gateway calibrate`): radios of one model still differ by a few dB.
    rssi_offsets: tuple[tuple[str, float], ...] = ()
    # Placement (core/presence/placement.py): sensors without a configured offset learn one
    # from their Wi-Fi readings: the 90th percentile of ~5 min windows brought to the
    # reference spot's (-51 dBm, Brno position 1, occupied), at most max_offset_db either way
    # (0: off); windows further off than that (an empty room) teach nothing.
    placement_reference_p90: float = -51.0
    placement_max_offset_db: float = 9.0


def _zone(r: Reader, path: str, i: int) -> ZoneSettings | None:
    keys = {"name", "sensors", "enter_rssi", "leave_rssi", "enter_distance", "leave_distance",
            "min_confirm", "path_loss_exponent"}
    if not isinstance(r.raw(path, None), dict):
        r.error(path, "expected a mapping with at least a name")
        return None
    r.known_keys(path, keys)
    name = r.str_(f"{path}.name", f"zone-{i + 1}", required=True,
                  pattern=r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
    sensors = []
    for sp in r.each(f"{path}.sensors"):
        sensors.append(r.str_(sp, "", required=True))
    enter = r.float_(f"{path}.enter_rssi", -200.0, -200.0, 0.0)
    # Default gap 6 dB: about 1.5 standard deviations of the smoothed jitter, so a device
    # sitting on the boundary does not cross back and forth.
    leave = r.float_(f"{path}.leave_rssi", max(enter - 6.0, -200.0), -200.0, 0.0)
    if leave > enter:
        r.error(f"{path}.leave_rssi", f"must not be above enter_rssi ({enter:g}): the gap is "
                                      "what stops a device at the boundary from flapping")
    enter_d = r.float_(f"{path}.enter_distance", -1.0, 0.1, 1000.0)
    leave_d = r.float_(f"{path}.leave_distance", -1.0, 0.1, 1000.0)
    if enter_d > 0 and leave_d < 0:
        leave_d = enter_d * 1.5
    if enter_d > 0 and leave_d < enter_d:
        r.error(f"{path}.leave_distance", f"must be at least enter_distance ({enter_d:g})")
    return ZoneSettings(
        name=name, sensors=tuple(sensors), enter_rssi=enter, leave_rssi=min(leave, enter),
        enter_distance_m=enter_d if enter_d > 0 else None,
        leave_distance_m=leave_d if leave_d > 0 else None,
        min_confirm_s=r.duration(f"{path}.min_confirm", 10.0),
        path_loss_exponent=r.float_(f"{path}.path_loss_exponent", 2.5, 1.5, 6.0),
    )


def _zones(r: Reader, section: str) -> tuple[ZoneSettings, ...]:
    zones: list[ZoneSettings] = []
    seen: set[str] = set()
    for i, path in enumerate(r.each(f"{section}.zones")):
        z = _zone(r, path, i)
        if z is None:
            continue
        if z.name in seen:
            r.error(f"{path}.name", f'zone "{z.name}" is defined twice')
        seen.add(z.name)
        zones.append(z)
    return tuple(zones) or (ZoneSettings(_DEFAULT_ZONE_NAME),)


def _marks(r: Reader, path: str, default: tuple[float, ...]) -> tuple[float, ...]:
    if not r.has(path):
        return default
    marks = [r.duration(p, 60.0, minimum=1.0) for p in r.each(path)]
    if marks != sorted(set(marks)):
        r.error(path, "expected increasing durations without repeats, e.g. [1m, 5m, 15m]")
        return default
    return tuple(marks)


_KEYS = frozenset({
    "visit_timeout", "stats_interval", "zones", "kalman", "reference_power", "outlier_db",
    "min_sightings", "sighting_window", "dwell_marks", "walk_in", "fixtures", "footfall",
    "arbitration", "max_devices", "exit", "rssi_offsets", "placement"})


def read(r: Reader, section: str) -> PresenceSettings:
    r.mapping(section)
    r.known_keys(section, _KEYS)
    for sub, keys in (("kalman", {"process_noise", "measurement_noise"}),
                      ("reference_power", {"ble", "wifi"}),
                      ("walk_in", {"min_time", "min_rssi", "count_after", "weak_max_presence",
                                   "weak_margin_db"}),
                      ("exit", {"rhythm_factor", "min_quiet"}),
                      ("fixtures", {"max_presence_per_day", "public_address_max_presence",
                                    "devices"}),
                      ("footfall", {"interval", "people_per_device", "smoothing"}),
                      ("arbitration", {"stickiness_margin_db", "summary_interval"}),
                      ("placement", {"reference_p90", "max_offset_db"})):
        r.mapping(f"{section}.{sub}")
        r.known_keys(f"{section}.{sub}", keys)
    s = section
    fixtures = frozenset(r.str_(p, "", required=True) for p in r.each(f"{s}.fixtures.devices"))
    return PresenceSettings(
        visit_timeout_s=r.duration(f"{s}.visit_timeout", 300.0, minimum=1.0),
        stats_interval_s=r.duration(f"{s}.stats_interval", 60.0, minimum=1.0),
        zones=_zones(r, s),
        kalman_process_noise=r.float_(f"{s}.kalman.process_noise", 1.0, 0.0001, 1000.0),
        kalman_measurement_noise=r.float_(f"{s}.kalman.measurement_noise", 25.0, 0.01, 10000.0),
        ref_power_ble=r.float_(f"{s}.reference_power.ble", -59.0, -120.0, 0.0),
        ref_power_wifi=r.float_(f"{s}.reference_power.wifi", -45.0, -120.0, 0.0),
        outlier_db=r.float_(f"{s}.outlier_db", 25.0, 3.0, 200.0),
        min_sightings=r.int_(f"{s}.min_sightings", 2, 1, 1000),
        sighting_window_s=r.duration(f"{s}.sighting_window", 120.0, minimum=1.0),
        dwell_marks_s=_marks(r, f"{s}.dwell_marks", (60.0, 300.0, 900.0)),
        walkin_min_s=r.duration(f"{s}.walk_in.min_time", 300.0),
        walkin_min_rssi=r.float_(f"{s}.walk_in.min_rssi", -70.0, -200.0, 0.0),
        walkin_count_s=r.duration(f"{s}.walk_in.count_after", 60.0),
        weak_max_presence_s=r.duration(f"{s}.walk_in.weak_max_presence", 1800.0,
                                       minimum=60.0),
        weak_margin_db=r.float_(f"{s}.walk_in.weak_margin_db", 6.0, 0.0, 100.0),
        exit_rhythm_factor=r.float_(f"{s}.exit.rhythm_factor", 3.0, 1.0, 100.0),
        exit_min_quiet_s=r.duration(f"{s}.exit.min_quiet", 120.0, minimum=1.0),
        fixture_max_presence_s=r.duration(f"{s}.fixtures.max_presence_per_day", 4 * 3600.0,
                                          minimum=60.0),
        fixture_public_max_presence_s=r.duration(
            f"{s}.fixtures.public_address_max_presence", 4 * 3600.0, minimum=60.0),
        fixture_ids=fixtures - {""},
        footfall_interval_s=r.duration(f"{s}.footfall.interval", 60.0, minimum=1.0),
        people_per_device=r.float_(f"{s}.footfall.people_per_device", 0.8, 0.01, 100.0),
        footfall_smoothing_s=r.duration(f"{s}.footfall.smoothing", 0.0),
        stickiness_margin_db=r.float_(f"{s}.arbitration.stickiness_margin_db", 4.0, 0.0, 50.0),
        summary_interval_s=r.duration(f"{s}.arbitration.summary_interval", 5.0, minimum=0.5),
        max_devices=r.int_(f"{s}.max_devices", 200_000, 100, 100_000_000),
        rssi_offsets=_offsets(r, f"{s}.rssi_offsets"),
        placement_reference_p90=r.float_(f"{s}.placement.reference_p90", -51.0, -120.0, 0.0),
        placement_max_offset_db=r.float_(f"{s}.placement.max_offset_db", 9.0, 0.0, 30.0),
    )


def _offsets(r: Reader, path: str) -> tuple[tuple[str, float], ...]:
    """`{sensor: dB}`: each a correction between -30 and +30 dB."""
    out: list[tuple[str, float]] = []
    for name, value in r.mapping(path).items():
        # Checked here, not through a key path: sensor names may contain dots.
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not -30.0 <= value <= 30.0:
            r.error(path, f"{name}: expected a number of dB from -30 to 30, got {value!r}")
            continue
        out.append((str(name), float(value)))
    return tuple(sorted(out))
