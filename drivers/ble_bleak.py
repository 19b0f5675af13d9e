"""Live BLE scanning with bleak (BlueZ on the Pi): callback -> core.ble -> sink.offer.

Invariants:
- The detection callback never blocks and never raises: it turns bleak's (BLEDevice,
  AdvertisementData) into sightings with the pure `sightings_from_bleak` and `sink.offer`s them
  (the sink drops the oldest and counts when full). Raw addresses go only to the sink.
- Passive mode registers HA's match-everything or-patterns (AD type Flags = 0x02, 0x06, 0x1a);
  adverts without a Flags structure are not seen in passive mode. If BlueZ cannot do passive
  scanning the driver logs a warning and falls back to active scanning for good.
- Watchdog: when no advert arrived for `watchdog_s` (default 90 s, as habluetooth) the scanner is
  stopped and the recovery ladder (`ble_recovery`) takes its next step before a new scan: scan
  restart, adapter power-cycle, bluetoothd restart (BlueZ discovery can stall silently,
  bluez/bluez#1554; some stalls only a bluetoothd restart cures, theengs/gateway#99). Adapter
  faults at start (`ESCALATE_ON`) climb the same ladder; the first advert resets it.
- Start failures are mapped to stable reasons (`map_bleak_error`). Transient ones (adapter
  missing or not ready, BlueZ not running, timeouts) are retried with exponential backoff, so a
  replugged dongle or a restarted bluetoothd is picked up; after `max_failures` consecutive
  failures, or at once for `dbus_permission`, `DriverError(name, reason)` goes to the supervisor.
- Once `start()` was called the scanner is stopped on every path: normal restart, cancel or
  timeout during the start, start failure (a half-started BlueZ discovery is never left on).
- We never touch BlueZ's TemporaryTimeout: BlueZ and bleak drop stale Device1 objects (default
  30 s), which keeps memory bounded under resolvable-private-address churn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

from presence_gateway.core.ble.decode import to_sightings
from presence_gateway.core.ble.types import Advert
from presence_gateway.core.model import Radio, Rejection, Sighting
from presence_gateway.core.privacy import parse_mac
from presence_gateway.drivers.base import Sink
from presence_gateway.drivers.ble_recovery import (
    DEFAULT_BLUETOOTHD_RESTART,
    AdapterControl,
    Escalation,
    SystemControl,
    adapter_by_address,
)
from presence_gateway.errors import DriverError

log = logging.getLogger(__name__)

PASSIVE_OR_PATTERNS: list[OrPatternLike] = [OrPattern(0, AdvertisementDataType.FLAGS, bytes([v]))
                       for v in (0x02, 0x06, 0x1A)]
FATAL_REASONS = frozenset({"dbus_permission"})
# Start failures of an adapter that BlueZ has: a power-cycle or a bluetoothd restart may cure
# them. Not `no_adapter` (nothing on the bus to power-cycle; a replugged dongle is picked up by
# the retries), `adapter_powered_off` (someone turned it off: not ours to turn on) or
# `bluez_not_running` (no bus socket, as in containers, or BlueZ not installed: the installer's
# to fix, and restarting it from every test box without D-Bus would be a surprise).
ESCALATE_ON = frozenset({"adapter_not_ready", "adapter_busy", "adapter_failed", "start_timeout",
                         "scanner_failed"})
_BAD_ADDRESS = Rejection(Radio.BLE, "bleak_bad_address")
_MAC = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")
DetectionCallback = Callable[[BLEDevice, AdvertisementData], None]


class Scanner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[[DetectionCallback, str, str], Scanner]


def bleak_scanner_factory(callback: DetectionCallback, mode: str, adapter: str) -> Scanner:
    """The real BleakScanner on `adapter` ("hci0"), active or passive (with or-patterns)."""
    args = BlueZScannerArgs(adapter=adapter)
    if mode == "passive":
        args["or_patterns"] = PASSIVE_OR_PATTERNS
        return BleakScanner(callback, scanning_mode="passive", bluez=args)
    return BleakScanner(callback, scanning_mode="active", bluez=args)


def bleak_address_type(device: BLEDevice, adv: AdvertisementData) -> str:
    """BlueZ's Device1.AddressType from platform_data or details; "unknown" elsewhere."""
    pd = adv.platform_data
    props: Any = pd[1] if isinstance(pd, tuple) and len(pd) > 1 else None
    if not isinstance(props, dict):
        details = device.details
        props = details.get("props") if isinstance(details, dict) else None
    kind = props.get("AddressType") if isinstance(props, dict) else None
    return kind if kind in ("public", "random") else "unknown"


def sightings_from_bleak(device: BLEDevice, adv: AdvertisementData, ts: float,
                         sensor: str = "") -> list[Sighting]:
    """bleak's callback values -> sightings ([] when the address is not a MAC, e.g. macOS)."""
    address = parse_mac(device.address)
    if address is None:
        return []
    advert = Advert(local_name=adv.local_name, manufacturer_data=adv.manufacturer_data,
                    service_data=adv.service_data, service_uuids=tuple(adv.service_uuids),
                    tx_power=adv.tx_power)
    rssi = adv.rssi if adv.rssi is not None and -127 < adv.rssi < 127 else None
    return to_sightings(ts, address, bleak_address_type(device, adv), rssi, advert, sensor=sensor)


_DBUS_REASONS = {
    "org.freedesktop.DBus.Error.ServiceUnknown": "bluez_not_running",
    "org.freedesktop.DBus.Error.NameHasNoOwner": "bluez_not_running",
    "org.freedesktop.DBus.Error.AccessDenied": "dbus_permission",
    "org.freedesktop.DBus.Error.AuthFailed": "dbus_permission",
    "org.bluez.Error.NotAuthorized": "dbus_permission",
    "org.freedesktop.DBus.Error.UnknownObject": "no_adapter",
    # The adapter left between bleak's cache check and the call (libdbus answers a path that
    # is gone with UnknownMethod); seen from D-Bus up in tests/drivers/test_ble_dbus.py.
    "org.freedesktop.DBus.Error.UnknownMethod": "no_adapter",
    "org.bluez.Error.NotReady": "adapter_not_ready",
    "org.bluez.Error.InProgress": "adapter_busy",
    "org.bluez.Error.Failed": "adapter_failed",
}


def map_bleak_error(exc: BaseException) -> tuple[str, str]:
    """A start/stop failure -> (stable reason, short detail for the installer)."""
    text = str(exc)
    if isinstance(exc, BleakDBusError):
        reason = _DBUS_REASONS.get(exc.dbus_error, "scanner_failed")
        return reason, exc.dbus_error
    if isinstance(exc, BleakBluetoothNotAvailableError):
        name = exc.reason.name
        if name.startswith("DENIED"):
            return "dbus_permission", "not allowed to use org.bluez (add the user to 'bluetooth')"
        if name == "POWERED_OFF":
            return "adapter_powered_off", "adapter is powered off (bluetoothctl power on)"
        return "no_adapter", text
    if isinstance(exc, BleakError):
        if "passive scanning" in text:
            return "passive_unsupported", text
        if "not found" in text and "adapter" in text:
            return "no_adapter", text
        return "scanner_failed", text
    if isinstance(exc, PermissionError):
        return "dbus_permission", text
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return "bluez_not_running", "system D-Bus socket unavailable: " + text
    if isinstance(exc, TimeoutError):
        return "start_timeout", "scanner did not start in time"
    return "scanner_failed", f"{type(exc).__name__}: {text}"


class BleakDriver:
    """The live BLE driver; runs until cancelled (see module docstring for its guarantees)."""

    def __init__(self, name: str, *, adapter: str = "hci0", mode: str = "active",
                 watchdog_s: float = 90.0, sensor: str = "",
                 scanner_factory: ScannerFactory = bleak_scanner_factory,
                 clock: Callable[[], float] = time.time, start_timeout_s: float = 15.0,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 max_failures: int = 6,
                 bluetoothd_restart: Sequence[str] | None = DEFAULT_BLUETOOTHD_RESTART,
                 control: AdapterControl | None = None) -> None:
        if mode not in ("active", "passive"):
            raise DriverError(name, "bad_mode", f"scanning mode {mode!r}: active or passive")
        self.name, self.adapter, self.mode, self.sensor = name, adapter, mode, sensor
        self.watchdog_s = watchdog_s
        self.check_s = min(30.0, watchdog_s / 3)
        self.scanner_factory = scanner_factory
        self.clock = clock
        self.start_timeout_s = start_timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_failures = max_failures
        self.adverts = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.recovery = Escalation(name, adapter, control if control is not None
                                   else SystemControl(bluetoothd_restart))
        self._last_advert = 0.0
        self._warned: str | None = None  # the start failure last logged as a warning
        self._sink: Sink | None = None

    # The recovery counters, for /metrics and the status line (they only grow).
    @property
    def scan_restarts(self) -> int:
        return self.recovery.scan_restarts

    @property
    def adapter_resets(self) -> int:
        return self.recovery.adapter_resets

    @property
    def bluetoothd_restarts(self) -> int:
        return self.recovery.bluetoothd_restarts

    @property
    def recovery_skips(self) -> int:
        return self.recovery.skips

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        sink = self._sink
        if sink is None:
            return
        self._last_advert = time.monotonic()
        self.adverts += 1
        self.recovery.adverts_flowing()
        out = sightings_from_bleak(device, adv, self.clock(), self.sensor)
        if not out:
            sink.reject(_BAD_ADDRESS)
        for s in out:
            sink.offer(s)

    async def run(self, sink: Sink) -> None:
        self._sink = sink
        failures = 0
        try:
            while True:
                try:
                    adapter = await self._adapter_name()
                except Exception as exc:  # BlueZ unreachable, or no adapter with that MAC
                    failures = await self._failed(exc, failures)
                    continue
                scanner = self.scanner_factory(self._on_advert, self.mode, adapter)
                try:
                    error = await self._start(scanner)
                    if error is None:
                        failures, self._warned = 0, None
                        await self._watch()
                finally:
                    # Every path: a start that was cancelled, timed out or failed half-way may
                    # have begun discovery in BlueZ (stop on a scanner never started is a no-op).
                    await self._stop(scanner)
                if error is not None:
                    failures = await self._failed(error, failures)
                    continue
                self.restarts += 1
                await self.recovery.escalate(f"no advert for {self.watchdog_s:g} s")
        finally:
            self._sink = None

    @property
    def problem(self) -> str | None:
        """The reason of the current run of start failures (None once a scan runs)."""
        return self._warned

    async def _adapter_name(self) -> str:
        """hciN for bleak and the power-cycle; a MAC in the config is looked up each time."""
        if not _MAC.fullmatch(self.adapter):
            return self.adapter
        name = await adapter_by_address(self.adapter, self.start_timeout_s)
        if name is None:
            raise BleakError(f"adapter '{self.adapter}' not found")
        if name != self.recovery.adapter:
            log.info("ble %s: adapter %s is %s", self.name, self.adapter, name)
            self.recovery.adapter = name
        return name

    async def _start(self, scanner: Scanner) -> Exception | None:
        """Start under the timeout; the foreign error (translated by the caller) or None."""
        try:
            async with asyncio.timeout(self.start_timeout_s):
                await scanner.start()
        except Exception as exc:
            return exc
        log.info("ble scanner %s started on %s (%s)", self.name, self.adapter, self.mode)
        return None

    async def _failed(self, exc: Exception, failures: int) -> int:
        reason, detail = map_bleak_error(exc)
        self.last_error = reason
        if reason == "passive_unsupported" and self.mode == "passive":
            log.warning("ble %s: passive scanning unsupported (%s); falling back to active",
                        self.name, detail)
            self.mode = "active"
            return failures
        failures += 1
        if reason in FATAL_REASONS or failures >= self.max_failures:
            raise DriverError(self.name, reason, detail) from None
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
        # One warning per change of reason: an unplugged dongle must not fill the journal.
        level = logging.WARNING if reason != self._warned else logging.DEBUG
        self._warned = reason
        log.log(level, "ble %s: scanner start failed: %s (%s); retry in %.3g s",
                self.name, reason, detail, delay)
        if reason in ESCALATE_ON:
            await self.recovery.escalate(f"scanner start failed: {reason}")
        await asyncio.sleep(delay)
        return failures

    async def _watch(self) -> None:
        """Returns when the scanner has been silent for watchdog_s (the caller restarts it)."""
        self._last_advert = time.monotonic()
        while True:
            await asyncio.sleep(self.check_s)
            if time.monotonic() - self._last_advert > self.watchdog_s:
                return

    async def _stop(self, scanner: Scanner) -> None:
        # Best effort: the adapter may be gone already; a failed stop must not hide the cause.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.start_timeout_s):
                await scanner.stop()
