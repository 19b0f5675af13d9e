"""A private D-Bus system bus with BlueZ emulated by python-dbusmock's `bluez5` template.

`dbus-daemon` runs on a socket in a temporary folder with a permissive policy (optionally with
extra <deny> rules); the mock (`python -m dbusmock --system --template bluez5`) owns `org.bluez`
on it. `BluezMock` drives the mock over dbus-fast (the library bleak itself uses), so the test
process needs no dbus-python: adapters are added and removed with the template's
`org.bluez.Mock` methods, devices and adverts are sent as BlueZ sends them (InterfacesAdded,
then PropertiesChanged on Device1 with ManufacturerData a{qv} / ServiceData a{sv} / RSSI n).

Why not the template's AddDevice: it declares ManufacturerData and ServiceData as arrays
(`aa{qv}`, `aa{sv}`), which bleak's scanner cannot read (it calls `.items()` on them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

POLICY = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    {extra}
  </policy>
</busconfig>
"""
# What a system without a policy for Powered says (BlueZ's own bluetooth.conf grants it only
# to root and the 'bluetooth' group on older images).
DENY_POWERED = ('<deny send_destination="org.bluez" '
                'send_interface="org.freedesktop.DBus.Properties" send_member="Set"/>')
MOCK = "org.freedesktop.DBus.Mock"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
DEVICE = "org.bluez.Device1"


@dataclass
class PrivateBus:
    address: str
    daemon: subprocess.Popen[str]
    mock: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    pid_file: Path | None = None  # the mock's pid; bluez_restart.py replaces it

    def stop(self) -> None:
        if self.mock is not None and self.pid_file is not None and self.pid_file.exists():
            _end_foreign(int(self.pid_file.read_text()), self.mock.pid)
        for proc in (self.mock, self.daemon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.daemon.stdout is not None:
            self.daemon.stdout.close()


def _end_foreign(pid: int, ours: int) -> None:
    """Ends a mock that a restart (not this process) started; it is not our child to wait."""
    if pid == ours:
        return
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(ProcessLookupError, FileNotFoundError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return  # exited; reaping it is its new parent's business
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def start_bus(folder: Path, extra_policy: str = "") -> PrivateBus:
    config = folder / "system-bus.conf"
    config.write_text(POLICY.format(socket=folder / "system_bus_socket", extra=extra_policy))
    daemon = subprocess.Popen(["dbus-daemon", f"--config-file={config}", "--nofork",
                               "--print-address"], stdout=subprocess.PIPE, text=True)
    assert daemon.stdout is not None
    address = daemon.stdout.readline().strip()
    if not address:
        daemon.wait(5)
        raise RuntimeError(f"dbus-daemon did not start (exit {daemon.returncode})")
    return PrivateBus(address=address, daemon=daemon)


def start_bluez_mock(bus: PrivateBus, folder: Path, parameters: str = "{}") -> None:
    """The bluez5 template on `bus` (its own process, as bluetoothd would be); `parameters`
    is the template's JSON, e.g. {"enable_monitor_api": false} for a BlueZ without
    --experimental (no passive scanning)."""
    bus.log = folder / "bluez-mock.log"
    bus.pid_file = folder / "bluez-mock.pid"
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
    bus.mock = subprocess.Popen(
        [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5", "--logfile",
         str(bus.log), "--parameters", parameters], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    bus.pid_file.write_text(str(bus.mock.pid))


@dataclass
class BluezMock:
    """The test's handle on the mock: adapters, devices, adverts, and what BlueZ was told."""

    bus: MessageBus
    powered: list[bool] = field(default_factory=list)      # Adapter1.Powered as set, in order
    discovering: list[bool] = field(default_factory=list)  # Adapter1.Discovering, in order

    @classmethod
    async def connect(cls) -> BluezMock:
        """Connects to the bus in DBUS_SYSTEM_BUS_ADDRESS and waits for org.bluez."""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self = cls(bus)
        for _ in range(200):
            reply = await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "NameHasOwner", "s", ["org.bluez"])
            if reply.body[0]:
                break
            await asyncio.sleep(0.025)
        else:
            raise RuntimeError("the bluez5 mock did not take org.bluez")
        bus.add_message_handler(self._on_signal)
        await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                         "AddMatch", "s", ["type='signal',interface='org.freedesktop.DBus."
                                           "Properties',member='PropertiesChanged',"
                                           "path_namespace='/org/bluez'"])
        return self

    def _on_signal(self, msg: Message) -> None:
        if (msg.message_type is MessageType.SIGNAL and msg.member == "PropertiesChanged"
                and msg.body and msg.body[0] == "org.bluez.Adapter1"):
            changed: dict[str, Variant] = msg.body[1]
            if "Powered" in changed:
                self.powered.append(bool(changed["Powered"].value))
            if "Discovering" in changed:
                self.discovering.append(bool(changed["Discovering"].value))

    async def _call(self, dest: str, path: str, iface: str, member: str, sig: str,
                    body: list[Any]) -> Message:
        reply = await self.bus.call(Message(destination=dest, path=path, interface=iface,
                                             member=member, signature=sig, body=body))
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
        return reply

    async def add_adapter(self, name: str = "hci0") -> None:
        await self._call("org.bluez", "/", "org.bluez.Mock", "AddAdapter", "ss", [name, "store"])

    async def remove_adapter(self, name: str = "hci0") -> None:
        await self._call("org.bluez", "/", "org.bluez.Mock", "RemoveAdapter", "s", [name])

    async def adapter_prop(self, name: str, prop: str) -> Any:
        reply = await self._call("org.bluez", f"/org/bluez/{name}", PROPS, "Get", "ss",
                                 ["org.bluez.Adapter1", prop])
        return reply.body[0].value

    async def add_device(self, adapter: str, address: str, address_type: str,
                         name: str) -> str:
        """A Device1 object as BlueZ creates it on first sight (no advert data yet)."""
        path = f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"
        props = {"Address": Variant("s", address), "AddressType": Variant("s", address_type),
                 "Name": Variant("s", name), "Alias": Variant("s", name),
                 "Adapter": Variant("o", f"/org/bluez/{adapter}"),
                 "Paired": Variant("b", False), "Connected": Variant("b", False),
                 "UUIDs": Variant("as", [])}
        await self._call("org.bluez", "/", MOCK, "AddObject", "ssa{sv}a(ssss)",
                         [path, DEVICE, props, []])
        await self._call("org.bluez", "/", MOCK, "EmitSignal", "sssav",
                         [OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}",
                          [Variant("o", path), Variant("a{sa{sv}}", {DEVICE: props})]])
        return path

    async def advert(self, path: str, rssi: int, manufacturer: dict[int, bytes] | None = None,
                     service_data: dict[str, bytes] | None = None,
                     uuids: list[str] | None = None) -> None:
        """One received advert: BlueZ's PropertiesChanged on the device (how bleak sees it)."""
        changed: dict[str, Variant] = {"RSSI": Variant("n", rssi)}
        if manufacturer is not None:
            changed["ManufacturerData"] = Variant(
                "a{qv}", {k: Variant("ay", v) for k, v in manufacturer.items()})
        if service_data is not None:
            changed["ServiceData"] = Variant(
                "a{sv}", {k: Variant("ay", v) for k, v in service_data.items()})
        if uuids is not None:
            changed["UUIDs"] = Variant("as", uuids)
        await self._call("org.bluez", path, MOCK, "EmitSignal", "sssav",
                         [PROPS, "PropertiesChanged", "sa{sv}as",
                          [Variant("s", DEVICE), Variant("a{sv}", changed), Variant("as", [])]])

    async def exported_by_us(self, path: str, iface: str) -> dict[str, Any]:
        """Properties of an object this test process exports on another connection (bleak's
        advertisement monitor), as BlueZ would read them."""
        names = await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "ListNames", "", [])
        for name in names.body[0]:
            if not name.startswith(":") or name == self.bus.unique_name:
                continue
            pid = await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                   "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                                   [name])
            if pid.body[0] != os.getpid():
                continue
            reply = await self._call(name, path, PROPS, "GetAll", "s", [iface])
            return {k: v.value for k, v in reply.body[0].items()}
        raise LookupError(f"no connection of this process exports {path}")

    def close(self) -> None:
        self.bus.disconnect()
