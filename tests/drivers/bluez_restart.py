"""Stand-in for `systemctl restart bluetooth` in tests/drivers/test_ble_dbus.py: ends the bluez5
mock whose pid is in FOLDER/bluez-mock.pid, starts a new one (its pid replaces the old), and
returns once the new one owns org.bluez and has re-registered the adapter, as systemd returns
once bluetoothd (Type=dbus) has its name and bluetoothd registers its controllers.

Usage: python bluez_restart.py FOLDER ADAPTER (DBUS_SYSTEM_BUS_ADDRESS names the private bus).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus


async def has_owner(bus: MessageBus) -> bool:
    reply = await bus.call(Message(destination="org.freedesktop.DBus",
                                   path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
                                   member="NameHasOwner", signature="s", body=["org.bluez"]))
    assert reply is not None
    return bool(reply.body[0])


async def until(bus: MessageBus, owned: bool) -> None:
    for _ in range(200):
        if await has_owner(bus) is owned:
            return
        await asyncio.sleep(0.025)
    raise SystemExit(f"org.bluez {'never taken' if owned else 'never released'}")


async def stop_old(pid: int) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    os.kill(pid, signal.SIGTERM)
    await until(bus, owned=False)
    bus.disconnect()


async def register(adapter: str) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    await until(bus, owned=True)
    reply = await bus.call(Message(destination="org.bluez", path="/", interface="org.bluez.Mock",
                                   member="AddAdapter", signature="ss", body=[adapter, "store"]))
    assert reply is not None and reply.error_name is None, reply and reply.error_name
    bus.disconnect()


def main(folder: Path, adapter: str) -> None:
    pid_file = folder / "bluez-mock.pid"
    asyncio.run(stop_old(int(pid_file.read_text())))
    # Outlives this script (as bluetoothd outlives systemctl), so not an asyncio child: the
    # loop would kill it on close. The test's bus fixture ends it by the pid written here.
    new = subprocess.Popen([sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5",
                            "--logfile", str(folder / "bluez-mock.log")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    pid_file.write_text(str(new.pid))
    asyncio.run(register(adapter))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
