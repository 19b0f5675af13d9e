"""Config driver names -> driver instances, and capture-file type detection.

The service never imports a concrete driver: it asks here. Imports are lazy so a machine
without BlueZ/D-Bus can still replay Wi-Fi captures, and the reverse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from presence_gateway.core.config import DriverSettings
from presence_gateway.core.yamlread import parse_duration
from presence_gateway.drivers.base import Driver
from presence_gateway.errors import DriverError

WIFI_LINKTYPES = frozenset({105, 119, 127, 163})
BLE_LINKTYPES = frozenset({251, 256, 272})


def create(settings: DriverSettings) -> Driver:
    o: dict[str, Any] = settings.options
    name, sensor = settings.name, str(o.get("sensor", ""))
    if settings.type == "wifi_pcap":
        from presence_gateway.drivers.wifi_pcap import WifiPcapDriver
        return WifiPcapDriver(name, list(o["paths"]), sensor=sensor)
    if settings.type == "ble_replay":
        from presence_gateway.drivers.ble_replay import BleReplayDriver
        return BleReplayDriver(name, list(o["paths"]), sensor=sensor)
    if settings.type == "ble_pcap":
        from presence_gateway.drivers.ble_pcap import BlePcapDriver
        return BlePcapDriver(name, list(o["paths"]), sensor=sensor)
    if settings.type == "wifi_monitor":
        from presence_gateway.drivers.wifi_monitor import WifiMonitorDriver
        chans = o.get("channels", [1, 6, 11])
        return WifiMonitorDriver(name, str(o["interface"]), None if chans == "all" else chans,
                                 parse_duration(o.get("dwell", 0.25)) or 0.25, sensor=sensor)
    if settings.type == "ble_bleak":
        from presence_gateway.drivers.ble_bleak import BleakDriver
        watchdog = parse_duration(o.get("watchdog", 90.0)) or 90.0
        return BleakDriver(name, adapter=str(o.get("adapter", "hci0")),
                           mode=str(o.get("mode", "active")), watchdog_s=watchdog, sensor=sensor)
    if settings.type == "fake":
        from presence_gateway.drivers.fake import FakeDriver
        return FakeDriver(name)
    raise DriverError(name, "unknown_type", settings.type)


def replay_settings(paths: Iterable[str]) -> tuple[DriverSettings, ...]:
    """One replay driver per recording: the service merges them in capture-time order, so
    files from different sessions or radios may be given in any order."""
    out = []
    for i, path in enumerate(paths):
        kind = detect_capture(path)
        out.append(DriverSettings(kind, f"replay-{i}-{Path(path).stem}"[:64], {"paths": [path]}))
    return tuple(out)


def detect_capture(path: str) -> str:
    """Which replay driver reads this file: 'wifi_pcap', 'ble_pcap' or 'ble_replay'."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise DriverError("replay", "capture_unreadable", f"{path}: {exc.strerror}") from None
    if head.startswith(b"btsnoop\0"):
        return "ble_pcap"
    linktype = _linktype(head)
    if linktype is not None:
        linktype &= 0xFFFF  # the top bits may carry the FCS length (pcap spec)
        if linktype in WIFI_LINKTYPES:
            return "wifi_pcap"
        if linktype in BLE_LINKTYPES:
            return "ble_pcap"
        raise DriverError("replay", "unsupported_linktype", f"{path}: link type {linktype}")
    if head[:2] == b"\x1f\x8b" or head.lstrip()[:1] in (b"{", b"#"):
        return "ble_replay"  # JSONL recordings (comment lines allowed), also gzipped
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
