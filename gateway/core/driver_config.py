"""The `drivers` config section: one typed settings class per driver type, validated once.

Invariants:
- `DriverType` is the only list of driver names; each member says whether it replays a
  recording (capture time) or reads a live radio (wall clock).
- Defaults are written once, in the settings classes; the reader takes them from there.
- What the reader returns is what the driver registry builds from: no option dict travels
  past the config, and nothing is parsed twice.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from presence_gateway.core.yamlread import Reader

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"


class DriverType(StrEnum):
    WIFI_PCAP = "wifi_pcap"
    WIFI_MONITOR = "wifi_monitor"
    BLE_REPLAY = "ble_replay"
    BLE_PCAP = "ble_pcap"
    BLE_BLEAK = "ble_bleak"
    FAKE = "fake"

    @property
    def is_recording(self) -> bool:
        return self in (DriverType.WIFI_PCAP, DriverType.BLE_REPLAY, DriverType.BLE_PCAP)


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverSettings:
    """Common to every driver: its type, a unique name, and the sensor it stands for (zones
    may be defined per sensor; empty means this gateway)."""

    type: DriverType
    name: str
    sensor: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingSettings(DriverSettings):
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WifiMonitorSettings(DriverSettings):
    interface: str
    channels: tuple[int, ...] | None = (1, 6, 11)  # None: every channel the adapter allows
    dwell_s: float = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class BleakSettings(DriverSettings):
    adapter: str = "hci0"
    mode: str = "active"
    watchdog_s: float = 90.0
    # The last step of the recovery ladder (drivers/ble_recovery.py); () turns it off.
    bluetoothd_restart: tuple[str, ...] = ("systemctl", "restart", "bluetooth")


_KEYS: dict[DriverType, frozenset[str]] = {
    DriverType.WIFI_PCAP: frozenset({"paths"}),
    DriverType.BLE_REPLAY: frozenset({"paths"}),
    DriverType.BLE_PCAP: frozenset({"paths"}),
    DriverType.WIFI_MONITOR: frozenset({"interface", "channels", "dwell"}),
    DriverType.BLE_BLEAK: frozenset({"adapter", "mode", "watchdog", "bluetoothd_restart"}),
    DriverType.FAKE: frozenset(),
}


def default_ble() -> BleakSettings:
    """What `run` scans without a `drivers` section: BLE on the first adapter, which every Pi
    has (Wi-Fi needs an interface in monitor mode, which only the config can name)."""
    return BleakSettings(type=DriverType.BLE_BLEAK, name="ble_bleak")


def read_drivers(r: Reader) -> tuple[DriverSettings, ...]:
    out: list[DriverSettings] = []
    names: set[str] = set()
    for path in r.each("drivers"):
        item = r.raw(path)
        if not isinstance(item, dict):
            r.error(path, "expected a mapping with at least a type")
            continue
        raw_type = r.str_(f"{path}.type", "", required=True,
                          choices=tuple(t.value for t in DriverType))
        name = r.str_(f"{path}.name", raw_type or "driver", pattern=NAME_PATTERN)
        if name in names:
            r.error(f"{path}.name", f'duplicate driver name "{name}"')
        names.add(name)
        if not raw_type:
            continue
        dtype = DriverType(raw_type)
        r.known_keys(path, _KEYS[dtype] | {"type", "name", "sensor"})
        common: dict[str, Any] = {"type": dtype, "name": name,
                                  "sensor": r.str_(f"{path}.sensor", "")}
        settings = _read_one(r, path, dtype, item, common)
        if settings is not None:
            out.append(settings)
    return tuple(out)


def _read_one(r: Reader, path: str, dtype: DriverType, item: dict[str, Any],
              common: dict[str, Any]) -> DriverSettings | None:
    if dtype.is_recording:
        paths = r.list_(f"{path}.paths")
        if not paths:
            r.error(f"{path}.paths", "expected a non-empty list of capture files")
        good = True
        for i, p in enumerate(paths):
            if not isinstance(p, str) or not p:
                r.error(f"{path}.paths[{i}]", "expected a file path")
                good = False
        return (RecordingSettings(paths=tuple(r.file_path(p) for p in paths), **common)
                if paths and good else None)
    if dtype is DriverType.WIFI_MONITOR:
        d = _defaults(WifiMonitorSettings)
        iface = r.str_(f"{path}.interface", "", required=True, pattern=r"[A-Za-z0-9_.:-]{1,15}")
        chans = item.get("channels", list(d["channels"]))
        if chans != "all" and not (isinstance(chans, list) and chans and all(
                isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 233 for c in chans)):
            r.error(f"{path}.channels", 'expected a list of channel numbers or "all"')
            chans = list(d["channels"])
        dwell = r.duration(f"{path}.dwell", d["dwell_s"], minimum=0.05)
        return WifiMonitorSettings(interface=iface, dwell_s=dwell,
                                   channels=None if chans == "all" else tuple(chans), **common)
    if dtype is DriverType.BLE_BLEAK:
        d = _defaults(BleakSettings)
        return BleakSettings(
            adapter=r.str_(f"{path}.adapter", d["adapter"],
                           pattern=r"hci\d+|([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}"),
            mode=r.str_(f"{path}.mode", d["mode"], choices=("active", "passive")),
            watchdog_s=r.duration(f"{path}.watchdog", d["watchdog_s"], minimum=5.0),
            bluetoothd_restart=_command(r, f"{path}.bluetoothd_restart",
                                        item.get("bluetoothd_restart", d["bluetoothd_restart"])),
            **common)
    return DriverSettings(**common)


def _command(r: Reader, path: str, raw: Any) -> tuple[str, ...]:
    """A command line as a string (shell-style quoting, no shell) or a list; false or "" for
    none."""
    if raw is False or raw == "" or raw == []:
        return ()
    if isinstance(raw, tuple):
        return raw
    try:
        if isinstance(raw, str):
            return tuple(shlex.split(raw))
    except ValueError as exc:
        r.error(path, f"unreadable command: {exc}")
        return ()
    if isinstance(raw, list) and all(isinstance(a, str) and a for a in raw):
        return tuple(raw)
    r.error(path, 'expected a command ("sudo -n systemctl restart bluetooth"), a list, or false')
    return ()


def _defaults(cls: type[DriverSettings]) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}
