"""The live BLE path from D-Bus up: bleak's own BlueZ backend, unpatched, against a private
system bus where python-dbusmock's `bluez5` template plays bluetoothd.

What is real: dbus-daemon, the D-Bus wire, bleak's BlueZManager and BleakScanner (match rules,
GetManagedObjects, SetDiscoveryFilter/StartDiscovery/StopDiscovery, signal parsing), the
driver, its recovery ladder and the Powered power-cycle over dbus-fast. What is emulated: the
adapter and the air (the test sends the PropertiesChanged that BlueZ would send per advert;
the mock does not stop delivering when powered off, so a stall is the test sending nothing).
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from presence_gateway.core.model import AddressKind, Radio
from presence_gateway.drivers.ble_bleak import BleakDriver
from presence_gateway.drivers.ble_recovery import RecoverySkipped, SystemControl
from presence_gateway.errors import DriverError
from tests.drivers.bluez_mock import (
    DENY_POWERED,
    BluezMock,
    PrivateBus,
    start_bluez_mock,
    start_bus,
)
from tests.sinks import ListSink

_missing = ("dbus-daemon not installed (Debian package dbus)" if shutil.which("dbus-daemon")
            is None else "python-dbusmock not installed (pip install python-dbusmock)"
            if importlib.util.find_spec("dbusmock") is None or importlib.util.find_spec("dbus")
            is None else None)
pytestmark = [pytest.mark.skipif(_missing is not None, reason=_missing or ""),
              pytest.mark.timeout(30)]

IBEACON = bytes.fromhex("0215414243444546474849404142434445460001" "0002c5")
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
TS = 1767225600.25


def _bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str = "",
         parameters: str = "{}") -> Iterator[PrivateBus]:
    bus = start_bus(tmp_path, policy)
    try:
        # bleak (through dbus-fast) reads the system bus address from here on each connect;
        # every test has its own event loop, so bleak's per-loop BlueZManager is new too.
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        start_bluez_mock(bus, tmp_path, parameters)
        yield bus
    finally:
        bus.stop()


@pytest.fixture
def bluez_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    yield from _bus(tmp_path, monkeypatch)


@pytest.fixture
def denying_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    yield from _bus(tmp_path, monkeypatch, DENY_POWERED)


@pytest.fixture
def old_bluez_bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    """BlueZ without --experimental: no AdvertisementMonitorManager1 on the adapter."""
    yield from _bus(tmp_path, monkeypatch, parameters='{"enable_monitor_api": false}')


@pytest.fixture
async def bluez(bluez_bus: PrivateBus) -> AsyncIterator[BluezMock]:
    mock = await BluezMock.connect()
    await mock.add_adapter("hci0")
    yield mock
    mock.close()


async def _until(cond: Callable[[], object], limit: float = 8.0,
                 pump: Callable[[], Awaitable[None]] | None = None) -> None:
    """Polls `cond`; `pump` (an advert) is sent each round, as a beacon keeps advertising."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "condition not reached in time"
        if pump is not None:
            await pump()
        await asyncio.sleep(0.05)


def _driver(tmp_path: Path, watchdog_s: float = 30.0, max_failures: int = 6,
            adapter: str = "hci0", mode: str = "active") -> BleakDriver:
    marker = tmp_path / "bluetoothd-restarted"
    # A command that leaves a mark instead of restarting the machine's bluetoothd.
    control = SystemControl((sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"),
                            settle_s=0.05, timeout_s=5.0)
    return BleakDriver("ble", adapter=adapter, mode=mode, watchdog_s=watchdog_s,
                       sensor="door", clock=lambda: TS, start_timeout_s=5.0, control=control,
                       backoff_s=0.05, max_backoff_s=0.2, max_failures=max_failures)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_adverts_through_bluez_arrive_as_sightings(bluez: BluezMock, tmp_path: Path) -> None:
    sink = ListSink()
    drv = _driver(tmp_path)
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: bluez.discovering[-1:] == [True])  # bleak's StartDiscovery reached it
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:01", "random", "beacon")
    await bluez.advert(dev, -61, manufacturer={0x004C: IBEACON},
                       service_data={EDDYSTONE: bytes.fromhex("10f4017777772e")},
                       uuids=[EDDYSTONE])
    await _until(lambda: {s.kind for s in sink.sightings} >= {"ibeacon", "eddystone_url"})
    await bluez.advert(dev, -55)  # RSSI change only: BlueZ reports it, bleak calls back
    await _until(lambda: any(s.rssi == -55 for s in sink.sightings))
    await _stop(task)
    ib = next(s for s in sink.sightings if s.kind == "ibeacon")
    assert ib.radio is Radio.BLE and ib.ts == TS and ib.sensor == "door"
    assert ib.address == bytes.fromhex("c0de00000001") and ib.rssi == -61
    assert ib.address_kind is AddressKind.STATIC  # AddressType "random" read from BlueZ's props
    assert ib.fields["uuid"] == "41424344-4546-4748-4940-414243444546"
    assert (ib.fields["major"], ib.fields["minor"], ib.fields["power"]) == (1, 2, -59)
    url = next(s for s in sink.sightings if s.kind == "eddystone_url")
    assert url.fields["url"].startswith("https://www.")
    assert bluez.discovering[-1] is False  # the driver's stop reached BlueZ (StopDiscovery)
    assert (drv.scan_restarts, drv.adapter_resets, drv.bluetoothd_restarts) == (0, 0, 0)


async def test_adapter_vanishes_and_returns(bluez: BluezMock, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    drv = _driver(tmp_path, watchdog_s=0.6, max_failures=1000)
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: bluez.discovering[-1:] == [True])
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:02", "random", "beacon")

    async def beacon() -> None:
        await bluez.advert(dev, -70, manufacturer={0x004C: IBEACON})
    await _until(lambda: sink.sightings, pump=beacon)
    await bluez.remove_adapter("hci0")  # InterfacesRemoved: the dongle is unplugged
    await _until(lambda: drv.last_error == "no_adapter")
    assert "no_adapter" in caplog.text  # reported: the start failure with its reason
    before = len(sink.sightings)
    await bluez.add_adapter("hci0")  # plugged back: InterfacesAdded
    await _until(lambda: len(sink.sightings) > before, pump=beacon)
    await _stop(task)
    assert drv.scan_restarts >= 1 and drv.recovery.level == 0  # adverts reset the ladder
    assert drv.adapter_resets == 0  # nothing was power-cycled while it was not on the bus


async def test_stalled_scan_escalates_to_a_power_cycle(bluez: BluezMock, tmp_path: Path) -> None:
    sink = ListSink()
    drv = _driver(tmp_path, watchdog_s=0.8)
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: bluez.discovering[-1:] == [True])
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:03", "random", "beacon")
    await bluez.advert(dev, -70, manufacturer={0x004C: IBEACON})
    await _until(lambda: sink.sightings)
    # Silence: step 1 restarts the scan (BlueZ sees Stop then Start), step 2 power-cycles.
    await _until(lambda: drv.scan_restarts == 1)
    assert bluez.powered == []
    await _until(lambda: bluez.powered == [False, True])
    assert await bluez.adapter_prop("hci0", "Powered") is True
    before = len(sink.sightings)

    async def beacon() -> None:
        await bluez.advert(dev, -66, manufacturer={0x004C: IBEACON})
    await _until(lambda: len(sink.sightings) > before, pump=beacon)
    await _stop(task)
    assert (drv.scan_restarts, drv.adapter_resets, drv.bluetoothd_restarts) == (1, 1, 0)
    assert drv.recovery.level == 0 and drv.recovery_skips == 0
    assert not (tmp_path / "bluetoothd-restarted").exists()
    assert bluez.discovering.count(True) >= 3  # first scan, after step 1, after step 2


async def test_stall_after_power_cycle_restarts_bluetoothd_and_scanning_resumes(
        bluez: BluezMock, tmp_path: Path) -> None:
    """Theengs users' cure (theengs/gateway#99), from D-Bus up: the third step's command ends
    the BlueZ process and starts a new one (bluez_restart.py, standing in for systemctl), which
    forgets its devices; bleak's manager outlives it and the new scan goes to the new owner."""
    sink = ListSink()
    drv = _driver(tmp_path, watchdog_s=0.6)
    drv.recovery.control = SystemControl(
        (sys.executable, str(Path(__file__).with_name("bluez_restart.py")), str(tmp_path),
         "hci0"), settle_s=0.05, timeout_s=5.0)
    first_mock = (tmp_path / "bluez-mock.pid").read_text()
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: drv.bluetoothd_restarts == 1)
    assert (tmp_path / "bluez-mock.pid").read_text() != first_mock  # BlueZ was restarted
    assert bluez.powered == [False, True] and drv.adapter_resets == 1
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:04", "random", "beacon")

    async def beacon() -> None:
        await bluez.advert(dev, -58, manufacturer={0x004C: IBEACON})
    await _until(lambda: sink.sightings, pump=beacon)
    await _stop(task)
    assert sink.sightings[0].address == bytes.fromhex("c0de00000004")
    assert drv.recovery.level == 0 and drv.recovery_skips == 0


async def test_power_cycle_denied_by_dbus_policy_is_a_reported_skip(
        denying_bus: PrivateBus) -> None:
    mock = await BluezMock.connect()
    try:
        await mock.add_adapter("hci0")
        with pytest.raises(RecoverySkipped) as skip:
            await SystemControl(settle_s=0.0, timeout_s=5.0).power_cycle("hci0")
        assert skip.value.reason == "dbus_permission"
        assert "AccessDenied" in skip.value.detail
        assert mock.powered == [] and await mock.adapter_prop("hci0", "Powered") is True
    finally:
        mock.close()


async def test_power_cycle_of_a_missing_adapter_is_a_skip(bluez: BluezMock) -> None:
    with pytest.raises(RecoverySkipped) as skip:
        await SystemControl(settle_s=0.0, timeout_s=5.0).power_cycle("hci7")
    assert skip.value.reason == "no_adapter"


async def test_cancel_while_powered_off_powers_the_adapter_back_on(bluez: BluezMock) -> None:
    cycle = asyncio.create_task(SystemControl(settle_s=30.0, timeout_s=5.0).power_cycle("hci0"))
    await _until(lambda: bluez.powered == [False])
    cycle.cancel()  # the service stops in the middle of step 2
    with pytest.raises(asyncio.CancelledError):
        await cycle
    await _until(lambda: bluez.powered == [False, True])
    assert await bluez.adapter_prop("hci0", "Powered") is True


async def test_adapter_named_by_mac_is_found_and_power_cycled(bluez: BluezMock,
                                                             tmp_path: Path) -> None:
    """The example config offers the adapter's MAC (hciN numbering can change across reboots);
    bleak and BlueZ's paths know only hciN, so the driver looks the MAC up on the bus."""
    address = await bluez.adapter_prop("hci0", "Address")
    sink = ListSink()
    drv = _driver(tmp_path, watchdog_s=0.6, adapter=address.lower())
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: bluez.discovering[-1:] == [True])
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:05", "random", "beacon")
    await bluez.advert(dev, -60, manufacturer={0x004C: IBEACON})
    await _until(lambda: sink.sightings)
    await _until(lambda: bluez.powered == [False, True])  # step 2 found hci0 by its MAC
    await _stop(task)
    assert drv.adapter_resets == 1 and drv.recovery.adapter == "hci0"


async def test_unknown_adapter_mac_is_no_adapter(bluez: BluezMock, tmp_path: Path) -> None:
    drv = _driver(tmp_path, adapter="AA:BB:CC:DD:EE:FF", max_failures=2)
    with pytest.raises(DriverError) as err:
        await drv.run(ListSink())
    assert err.value.reason == "no_adapter" and bluez.discovering == []


async def test_passive_scan_registers_the_flags_or_patterns_with_bluez(
        bluez: BluezMock, bluez_bus: PrivateBus, tmp_path: Path) -> None:
    sink = ListSink()
    drv = _driver(tmp_path, mode="passive")
    task = asyncio.create_task(drv.run(sink))
    assert bluez_bus.log is not None
    log = bluez_bus.log
    await _until(lambda: "RegisterMonitor" in log.read_text())
    monitor = log.read_text().split("RegisterMonitor", 1)[1].split()[0].strip("\"'")
    props = await bluez.exported_by_us(monitor, "org.bluez.AdvertisementMonitor1")
    dev = await bluez.add_device("hci0", "C0:DE:00:00:00:06", "random", "beacon")
    await bluez.advert(dev, -64, manufacturer={0x004C: IBEACON})
    await _until(lambda: sink.sightings)
    await _stop(task)
    # What BlueZ reads from bleak's monitor: Home Assistant's match-everything patterns on AD
    # type Flags (0x01) = 0x02, 0x06, 0x1a.
    assert props["Type"] == "or_patterns"
    assert [(o, t, bytes(v)) for o, t, v in props["Patterns"]] == [
        (0, 0x01, b"\x02"), (0, 0x01, b"\x06"), (0, 0x01, b"\x1a")]
    assert drv.mode == "passive" and bluez.discovering == []  # no active discovery on air
    assert "UnregisterMonitor" in log.read_text()  # the driver's stop reached BlueZ


async def test_passive_without_the_monitor_api_falls_back_to_active(
        old_bluez_bus: PrivateBus, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bluez = await BluezMock.connect()
    try:
        await bluez.add_adapter("hci0")
        sink = ListSink()
        drv = _driver(tmp_path, mode="passive")
        task = asyncio.create_task(drv.run(sink))
        await _until(lambda: bluez.discovering[-1:] == [True])  # active discovery instead
        dev = await bluez.add_device("hci0", "C0:DE:00:00:00:07", "random", "beacon")
        await bluez.advert(dev, -64, manufacturer={0x004C: IBEACON})
        await _until(lambda: sink.sightings)
        await _stop(task)
    finally:
        bluez.close()
    assert drv.mode == "active" and drv.last_error == "passive_unsupported"
    assert "falling back to active" in caplog.text
