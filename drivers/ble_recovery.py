"""The live BLE driver's escalating recovery: restart the scan, power-cycle the adapter, restart
bluetoothd.

Invariants:
- One ladder per driver. Each escalation performs the next step; the caller stops the scanner
  before and starts a new one after, so every step ends in a fresh scan. Steps: 1 scan restart
  (nothing but the restart itself), 2 adapter power-cycle (org.bluez.Adapter1.Powered off/on
  over D-Bus), 3 bluetoothd restart (a configurable command, default `systemctl restart
  bluetooth`). Past the top the ladder holds at scan restarts: a store with genuinely no
  advertisers (closed at night) must not restart bluetoothd every watchdog period.
- The ladder goes back to the bottom when adverts flow again (`adverts_flowing`), so the next
  stall, days later, gets the whole ladder again.
- A step that cannot be carried out (D-Bus denies Powered, the adapter is not on the bus, no
  systemctl, polkit refuses) is a counted, logged skip and the ladder moves on: recovery never
  raises, so it can never be the reason the driver stops.
- Counters only grow; the driver exposes them for /metrics and the status line. A log line is
  written per step taken and when the ladder resets or tops out, not per watchdog period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from enum import IntEnum
from typing import Protocol

from bleak.exc import BleakDBusError
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.auth import AuthExternal

log = logging.getLogger(__name__)

DEFAULT_BLUETOOTHD_RESTART: tuple[str, ...] = ("systemctl", "restart", "bluetooth")
BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
# D-Bus errors that mean "we may not": a skip to report, not a fault of the adapter.
_DENIED = frozenset({"org.freedesktop.DBus.Error.AccessDenied",
                     "org.freedesktop.DBus.Error.AuthFailed",
                     "org.bluez.Error.NotAuthorized", "org.bluez.Error.NotPermitted"})
_GONE = frozenset({"org.freedesktop.DBus.Error.UnknownObject",
                   "org.freedesktop.DBus.Error.UnknownMethod",
                   "org.freedesktop.DBus.Error.UnknownInterface"})
_NO_BLUEZ = frozenset({"org.freedesktop.DBus.Error.ServiceUnknown",
                       "org.freedesktop.DBus.Error.NameHasNoOwner"})


class Step(IntEnum):
    SCAN_RESTART = 1
    ADAPTER_RESET = 2
    BLUETOOTHD_RESTART = 3


class RecoverySkipped(Exception):
    """A step that could not be carried out; `reason` is a stable code for counters and logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class AdapterControl(Protocol):
    """What the ladder does to the system (the real one below; tests pass a recording fake)."""

    async def power_cycle(self, adapter: str) -> None:
        """Powered off then on; raises RecoverySkipped when not possible."""

    async def restart_bluetoothd(self) -> None:
        """Raises RecoverySkipped when not permitted or not possible."""


def _auth() -> AuthExternal | None:
    # As bleak does (BLEAK_DBUS_AUTH_UID): in a user namespace the bus may know us by another
    # uid, and the power-cycle must authenticate as the scanner does.
    raw = os.environ.get("BLEAK_DBUS_AUTH_UID", "")
    return AuthExternal(uid=int(raw)) if raw.isdigit() else None


class SystemControl:
    """BlueZ over the system D-Bus (dbus-fast, bleak's own D-Bus library) and a command for
    bluetoothd. Each call opens its own short connection: recovery is rare, and a connection
    shared with a wedged scan is the thing we are trying to get away from."""

    def __init__(self, bluetoothd_restart: Sequence[str] | None = DEFAULT_BLUETOOTHD_RESTART,
                 *, settle_s: float = 1.0, timeout_s: float = 15.0,
                 restart_timeout_s: float = 60.0) -> None:
        self.bluetoothd_restart = tuple(bluetoothd_restart or ())
        self.settle_s, self.timeout_s = settle_s, timeout_s
        self.restart_timeout_s = restart_timeout_s

    async def power_cycle(self, adapter: str) -> None:
        path = f"/org/bluez/{adapter}"
        try:
            async with asyncio.timeout(self.timeout_s + self.settle_s):
                bus = await MessageBus(bus_type=BusType.SYSTEM, auth=_auth()).connect()
                try:
                    await self._off_then_on(bus, path)
                finally:
                    bus.disconnect()
        except RecoverySkipped:
            raise
        except TimeoutError:
            raise RecoverySkipped("timeout", f"Powered on {path} did not answer") from None
        except PermissionError as exc:
            raise RecoverySkipped("dbus_permission", str(exc)) from None
        except OSError as exc:  # no system bus socket (containers without /run/dbus)
            raise RecoverySkipped("no_system_bus", str(exc)) from None
        except Exception as exc:  # dbus-fast AuthError and the like: reported, never raised
            raise RecoverySkipped("dbus_failed", f"{type(exc).__name__}: {exc}") from None

    async def _off_then_on(self, bus: MessageBus, path: str) -> None:
        try:
            await _set_powered(bus, path, False)
            # Let the controller actually go down; BlueZ answers Set once the mgmt command is
            # done, but some USB dongles need a moment before power-on.
            await asyncio.sleep(self.settle_s)
        except RecoverySkipped:
            raise  # refused: the adapter was not turned off, nothing to undo
        except BaseException:
            # A service stop (cancel) or the timeout while it is off must not leave the store
            # without BLE until someone notices: power it on, then let the cancel through.
            with contextlib.suppress(Exception):
                await _set_powered(bus, path, True)
            raise
        try:
            await _set_powered(bus, path, True)
        except RecoverySkipped as first:
            # Off worked and on did not: an adapter left off is worse than the stall, so once
            # more after the settle; then say so plainly (the ladder's next step still runs).
            await asyncio.sleep(self.settle_s)
            try:
                await _set_powered(bus, path, True)
            except RecoverySkipped:
                raise RecoverySkipped("power_on_failed", first.detail) from None

    async def restart_bluetoothd(self) -> None:
        cmd = self.bluetoothd_restart
        if not cmd:
            raise RecoverySkipped("disabled", "no bluetoothd restart command configured")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            raise RecoverySkipped("command_missing", f"{cmd[0]} not found") from None
        except PermissionError as exc:
            raise RecoverySkipped("not_permitted", str(exc)) from None
        try:
            async with asyncio.timeout(self.restart_timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RecoverySkipped("timeout", " ".join(cmd)) from None
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip().splitlines()
            first = text[0] if text else f"exit status {proc.returncode}"
            low = first.lower()
            # systemctl without root and without a polkit rule: "Access denied" or
            # "Interactive authentication required" (exit 1 or 4).
            denied = "denied" in low or "authentication" in low or "permission" in low
            raise RecoverySkipped("not_permitted" if denied else "command_failed", first)


async def adapter_by_address(address: str, timeout_s: float = 15.0) -> str | None:
    """BlueZ's name ("hci1") for the adapter with this MAC, or None. The config may name the
    adapter by MAC because hciN numbering follows probe order and can change across reboots;
    bleak and BlueZ's object paths only know hciN, so it is looked up before every start."""
    async with asyncio.timeout(timeout_s):
        bus = await MessageBus(bus_type=BusType.SYSTEM, auth=_auth()).connect()
        try:
            reply = await bus.call(Message(
                destination=BLUEZ, path="/", interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects"))
        finally:
            bus.disconnect()
    if reply is None or reply.message_type == MessageType.ERROR:
        name = reply.error_name if reply is not None else "no reply"
        # The same exception bleak raises, so the driver's error mapping gives the same reasons.
        raise BleakDBusError(name or "org.freedesktop.DBus.Error.Failed",
                             reply.body if reply is not None else [])
    want = address.upper()
    for path, interfaces in reply.body[0].items():
        props = interfaces.get(ADAPTER_IFACE)
        if props is not None and str(props["Address"].value).upper() == want:
            return str(path).rsplit("/", 1)[-1]
    return None


async def _set_powered(bus: MessageBus, path: str, on: bool) -> None:
    reply = await bus.call(Message(
        destination=BLUEZ, path=path, interface="org.freedesktop.DBus.Properties",
        member="Set", signature="ssv", body=[ADAPTER_IFACE, "Powered", Variant("b", on)]))
    if reply is None or reply.message_type != MessageType.ERROR:
        return
    name = reply.error_name or ""
    detail = f"{name} {reply.body[0] if reply.body else ''}".strip()
    if name in _DENIED:
        raise RecoverySkipped("dbus_permission", detail)
    if name in _GONE:
        raise RecoverySkipped("no_adapter", detail)
    if name in _NO_BLUEZ:
        raise RecoverySkipped("bluez_not_running", detail)
    raise RecoverySkipped("adapter_failed", detail)  # rfkill (org.bluez.Error.Blocked), Busy


class Escalation:
    """The ladder and its counters (attributes read by the driver's properties)."""

    def __init__(self, name: str, adapter: str, control: AdapterControl) -> None:
        self.name, self.adapter, self.control = name, adapter, control
        self.level = 0  # the last step taken since adverts last flowed (0: none)
        self.scan_restarts = 0
        self.adapter_resets = 0
        self.bluetoothd_restarts = 0
        self.skips = 0
        self.last_step: str | None = None  # "adapter_reset" / "bluetoothd_restart: skipped ..."
        self._taken: list[str] = []

    async def escalate(self, why: str) -> Step:
        """Take the next step for `why` (a stall or a start failure); returns the step taken.
        The caller has stopped the scanner and starts a new one afterwards."""
        if self.level >= Step.BLUETOOTHD_RESTART:
            if self.level == Step.BLUETOOTHD_RESTART:
                log.warning("ble %s: recovery ladder exhausted (%s); restarting the scan each "
                            "time until adverts flow again", self.name, why)
                self.level += 1  # log once; stays above the top
            self.scan_restarts += 1
            self.last_step = "scan_restart"
            return Step.SCAN_RESTART
        step = Step(self.level + 1)
        self.level = step
        self._taken.append(step.name.lower())
        if step is Step.SCAN_RESTART:
            self.scan_restarts += 1
            self.last_step = "scan_restart"
            log.warning("ble %s: recovery step 1/3, restarting the scan (%s)", self.name, why)
        elif step is Step.ADAPTER_RESET:
            log.warning("ble %s: recovery step 2/3, power-cycling %s (%s)",
                        self.name, self.adapter, why)
            try:
                await self.control.power_cycle(self.adapter)
            except RecoverySkipped as skip:
                self._skipped("adapter_reset", skip)
            else:
                self.adapter_resets += 1
                self.last_step = "adapter_reset"
        else:
            log.warning("ble %s: recovery step 3/3, restarting bluetoothd (%s)", self.name, why)
            try:
                await self.control.restart_bluetoothd()
            except RecoverySkipped as skip:
                self._skipped("bluetoothd_restart", skip)
            else:
                self.bluetoothd_restarts += 1
                self.last_step = "bluetoothd_restart"
        return step

    def _skipped(self, step: str, skip: RecoverySkipped) -> None:
        self.skips += 1
        self.last_step = f"{step} skipped: {skip.reason}"
        log.warning("ble %s: %s skipped: %s", self.name, step.replace("_", " "), skip)

    def adverts_flowing(self) -> None:
        """Adverts arrive again: the next stall starts from the bottom of the ladder. Cheap when
        there is nothing to reset (called from the detection callback)."""
        if self.level == 0:
            return
        log.info("ble %s: adverts flowing again after %s", self.name, ", ".join(self._taken))
        self.level = 0
        self._taken.clear()
