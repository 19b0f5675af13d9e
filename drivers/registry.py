"""Config driver names -> driver instances, and capture-file type detection.

The service never imports a concrete driver: it asks here. Imports are lazy so a machine
without BlueZ/D-Bus can still replay Wi-Fi captures, and the reverse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from presence_gateway.core.driver_config import (
    BleakSettings,
    DriverSettings,
    DriverType,
    RecordingSettings,
    WifiMonitorSettings,
)
from presence_gateway.drivers.base import Driver
from presence_gateway.errors import DriverError

WIFI_LINKTYPES = frozenset({105, 119, 127, 163})
BLE_LINKTYPES = frozenset({251, 256, 272})


def create(settings: DriverSettings) -> Driver:
    """The driver for validated settings (imports are lazy: see the module docstring)."""
    s, name, sensor = settings, settings.name, settings.sensor
    if isinstance(s, RecordingSettings):
        if s.type is DriverType.WIFI_PCAP:
            from presence_gateway.drivers.wifi_pcap import WifiPcapDriver
            return WifiPcapDriver(name, list(s.paths), sensor=sensor)
        if s.type is DriverType.BLE_REPLAY:
            from presence_gateway.drivers.ble_replay import BleReplayDriver
            return BleReplayDriver(name, list(s.paths), sensor=sensor)
        from presence_gateway.drivers.ble_pcap import BlePcapDriver
        return BlePcapDriver(name, list(s.paths), sensor=sensor)
    if isinstance(s, WifiMonitorSettings):
        from presence_gateway.drivers.wifi_monitor import WifiMonitorDriver
        return WifiMonitorDriver(name, s.interface, list(s.channels) if s.channels else None,
                                 s.dwell_s, sensor=sensor)
    if isinstance(s, BleakSettings):
        from presence_gateway.drivers.ble_bleak import BleakDriver
        return BleakDriver(name, adapter=s.adapter, mode=s.mode, watchdog_s=s.watchdog_s,
                           sensor=sensor, bluetoothd_restart=s.bluetoothd_restart)
    if s.type is DriverType.FAKE:
        from presence_gateway.drivers.fake import FakeDriver
        return FakeDriver(name)
    raise DriverError(name, "unknown_type", str(s.type))


def replay_settings(paths: Iterable[str]) -> tuple[RecordingSettings, ...]:
    """One replay driver per recording: the service merges them in capture-time order, so
    files from different sessions or radios may be given in any order."""
    return tuple(recording(path, f"replay-{i}-{Path(path).stem}"[:64])
                 for i, path in enumerate(paths))


def recording(path: str, name: str) -> RecordingSettings:
    """Settings for one capture file, its driver chosen by the file's format."""
    return RecordingSettings(type=detect_capture(path), name=name, paths=(path,))


def detect_capture(path: str) -> DriverType:
    """Which replay driver reads this file (a recording DriverType)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise DriverError("replay", "capture_unreadable", f"{path}: {exc.strerror}") from None
    if head.startswith(b"btsnoop\0"):
        return DriverType.BLE_PCAP
    linktype = _linktype(head)
    if linktype is not None:
        linktype &= 0xFFFF  # the top bits may carry the FCS length (pcap spec)
        if linktype in WIFI_LINKTYPES:
            return DriverType.WIFI_PCAP
        if linktype in BLE_LINKTYPES:
            return DriverType.BLE_PCAP
        raise DriverError("replay", "unsupported_linktype", f"{path}: link type {linktype}")
    if head[:2] == b"\x1f\x8b" or head.lstrip()[:1] in (b"{", b"#"):
        return DriverType.BLE_REPLAY  # JSONL recordings (comment lines allowed), also gzipped
    raise DriverError("replay", "unknown_format", f"{path}: not pcap, pcapng, btsnoop or JSONL")


def _linktype(head: bytes) -> int | None:
    if len(head) < 24:
        return None
    magic = head[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return int(struct.unpack_from("<I", head, 20)[0])
    if magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return int(struct.unpack_from(">I", head, 20)[0])
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng: the first IDB after the section header
        bom = head[8:12]
        endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
        shb_len = struct.unpack_from(endian + "I", head, 4)[0]
        off = shb_len
        while off + 12 <= len(head):
            btype, blen = struct.unpack_from(endian + "II", head, off)
            if btype == 1:
                return int(struct.unpack_from(endian + "H", head, off + 8)[0])
            if blen < 12:
                return None
            off += blen
    return None
