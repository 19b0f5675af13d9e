"""Live BLE driver: bleak's REAL AdvertisementData/BLEDevice/exception types, a fake radio only.

The radio cannot exist here, so `FakeScanner` stands in for BleakScanner (start/stop, and the
detection callback the driver hands it). Everything else is the real code path.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)

from presence_gateway.core.model import AddressKind, Radio
from presence_gateway.drivers.ble_bleak import (
    ESCALATE_ON,
    PASSIVE_OR_PATTERNS,
    BleakDriver,
    DetectionCallback,
    Scanner,
    ScannerFactory,
    bleak_scanner_factory,
    map_bleak_error,
    sightings_from_bleak,
)
from presence_gateway.drivers.ble_recovery import RecoverySkipped, Step, SystemControl
from presence_gateway.errors import DriverError
from tests.sinks import ListSink

IBEACON = bytes.fromhex("0215414243444546474849404142434445460001" "0002c5")



def _adv(rssi: int = -61, props: dict[str, object] | None = None) -> AdvertisementData:
    return AdvertisementData(
        local_name="beacon", manufacturer_data={0x004C: IBEACON},
        service_data={"0000feaa-0000-1000-8000-00805f9b34fb": bytes.fromhex("10f4017777772e")},
        service_uuids=["0000feaa-0000-1000-8000-00805f9b34fb"], tx_power=-4, rssi=rssi,
        platform_data=("/org/bluez/hci0/dev_C0_DE_00_00_00_01", props or {}),
    )


def _dev(address: str = "C0:DE:00:00:00:01", details: object = None) -> BLEDevice:
    return BLEDevice(address, "beacon", details)


def test_sightings_field_by_field() -> None:
    adv = _adv(props={"AddressType": "random", "RSSI": -61})
    out = sightings_from_bleak(_dev(), adv, 1767225600.5, "door")
    kinds = {s.kind: s for s in out}
    ib = kinds["ibeacon"]
    assert ib.ts == 1767225600.5 and ib.radio == Radio.BLE
    assert ib.address == bytes.fromhex("c0de00000001")
    assert ib.address_kind == AddressKind.STATIC  # random, top bits 0b11
    assert ib.rssi == -61 and ib.channel is None and ib.sensor == "door"
    assert ib.fields["uuid"] == "41424344-4546-4748-4940-414243444546"
    assert (ib.fields["major"], ib.fields["minor"], ib.fields["power"]) == (1, 2, -59)
    assert kinds["eddystone_url"].fields["url"].startswith("https://www.")
    # Address type from BLEDevice.details when platform_data carries none; else unknown.
    adv2 = AdvertisementData(None, {}, {}, [], None, -70, ())
    public = sightings_from_bleak(_dev(details={"props": {"AddressType": "public"}}), adv2, 1.0)
    assert [s.address_kind for s in public] == [AddressKind.PUBLIC]
    assert sightings_from_bleak(_dev(), adv2, 1.0)[0].address_kind == AddressKind.UNKNOWN
    # BlueZ reports -127 when it has no RSSI; macOS-style UUID addresses yield nothing.
    assert sightings_from_bleak(_dev(), _adv(rssi=-127), 1.0)[0].rssi is None
    assert sightings_from_bleak(_dev("7A1B2C3D-0000-4000-8000-000000000000"), adv2, 1.0) == []


class FakeControl:
    """The system side of the recovery ladder, recorded (a unit test never power-cycles or
    restarts anything); `skip` makes a step report RecoverySkipped as the real one would."""

    def __init__(self, skip: dict[str, RecoverySkipped] | None = None) -> None:
        self.calls: list[str] = []
        self.skip = skip or {}

    async def power_cycle(self, adapter: str) -> None:
        self.calls.append(f"power_cycle {adapter}")
        if "power_cycle" in self.skip:
            raise self.skip["power_cycle"]

    async def restart_bluetoothd(self) -> None:
        self.calls.append("restart_bluetoothd")
        if "restart_bluetoothd" in self.skip:
            raise self.skip["restart_bluetoothd"]


class FakeScanner:
    """Test double for the radio: records starts/stops, raises bleak's real exceptions."""

    def __init__(self, callback: DetectionCallback, mode: str, adapter: str,
                 error: BaseException | None = None) -> None:
        self.callback, self.mode, self.adapter, self.error = callback, mode, adapter, error
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.error is not None:
            raise self.error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def _factory(errors: list[BaseException | None]) -> tuple[list[FakeScanner], ScannerFactory]:
    made: list[FakeScanner] = []

    def make(cb: DetectionCallback, mode: str, adapter: str) -> Scanner:
        s = FakeScanner(cb, mode, adapter, errors.pop(0) if errors else None)
        made.append(s)
        return s
    return made, make


async def _until(cond: Callable[[], object], limit: float = 3.0) -> None:
    for _ in range(int(limit / 0.005)):  # poll the condition; no timing is asserted
        if cond():
            return
        await asyncio.sleep(0.005)


async def test_callback_reaches_sink_and_stop_on_cancel() -> None:
    made, make = _factory([])
    sink = ListSink()
    drv = BleakDriver("ble", control=FakeControl(), adapter="hci1", scanner_factory=make,
                      clock=lambda: 42.0, sensor="s")
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: made and made[0].started)
    made[0].callback(_dev(), _adv(props={"AddressType": "random"}))
    made[0].callback(_dev("not-a-mac"), _adv())
    assert {s.kind for s in sink.sightings} == {"ibeacon", "eddystone_url"}
    assert all(s.ts == 42.0 and s.sensor == "s" for s in sink.sightings)
    assert sink.rejections == {"bleak_bad_address": 1}
    assert made[0].adapter == "hci1" and made[0].mode == "active"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert made[0].stopped and drv.adverts == 2


class HangingScanner(FakeScanner):
    """A start() that never returns (BlueZ stuck half-way through StartDiscovery)."""

    async def start(self) -> None:
        self.started = True  # entered: discovery may already be running in BlueZ
        await asyncio.Event().wait()


async def test_cancel_during_start_still_stops_scanner() -> None:
    made: list[FakeScanner] = []

    def make(cb: DetectionCallback, mode: str, adapter: str) -> Scanner:
        made.append(HangingScanner(cb, mode, adapter))
        return made[-1]

    drv = BleakDriver("ble", control=FakeControl(), scanner_factory=make)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: made and made[0].started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert made[0].stopped


async def test_start_timeout_stops_scanner_before_retry() -> None:
    made: list[FakeScanner] = []

    def make(cb: DetectionCallback, mode: str, adapter: str) -> Scanner:
        made.append(HangingScanner(cb, mode, adapter))
        return made[-1]

    drv = BleakDriver("ble", control=FakeControl(), scanner_factory=make, start_timeout_s=0.01,
                      backoff_s=0.001, max_failures=2)
    with pytest.raises(DriverError) as err:
        await drv.run(ListSink())
    assert err.value.reason == "start_timeout"
    assert len(made) == 2 and all(s.stopped for s in made)


async def test_watchdog_restarts_silent_scanner() -> None:
    made, make = _factory([])
    drv = BleakDriver("ble", control=FakeControl(), watchdog_s=0.03, scanner_factory=make)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: len(made) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(made) >= 3 and drv.restarts >= 2
    assert all(s.stopped for s in made[:-1])  # each silent scanner was stopped before the next


async def test_stall_climbs_the_ladder_holds_at_the_top_and_resets_on_adverts(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "presence_gateway.drivers.ble_recovery")
    made, make = _factory([])
    ctl = FakeControl()
    drv = BleakDriver("ble", control=ctl, watchdog_s=0.03, scanner_factory=make)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: len(made) >= 6)
    # One synchronous snapshot: scan restart, power-cycle, bluetoothd restart, then scan
    # restarts only (a store with no advertisers must not restart bluetoothd every 90 s).
    assert ctl.calls == ["power_cycle hci0", "restart_bluetoothd"]
    assert (drv.adapter_resets, drv.bluetoothd_restarts, drv.recovery_skips) == (1, 1, 0)
    assert drv.scan_restarts == drv.restarts - 2 and drv.scan_restarts >= 3
    assert caplog.text.count("recovery ladder exhausted") == 1
    made[-1].callback(_dev(), _adv())  # adverts flow: the next stall starts from the bottom
    assert drv.recovery.level == 0 and "adverts flowing again" in caplog.text
    await _until(lambda: len(ctl.calls) >= 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctl.calls[2] == "power_cycle hci0" and drv.adapter_resets == 2


async def test_steps_not_permitted_are_counted_skips_never_errors() -> None:
    made, make = _factory([])
    ctl = FakeControl(skip={
        "power_cycle": RecoverySkipped("dbus_permission", "org.bluez.Error.NotAuthorized"),
        "restart_bluetoothd": RecoverySkipped("not_permitted", "Access denied")})
    drv = BleakDriver("ble", control=ctl, watchdog_s=0.03, scanner_factory=make)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: len(made) >= 5)
    assert not task.done()
    assert (drv.adapter_resets, drv.bluetoothd_restarts, drv.recovery_skips) == (0, 0, 2)
    assert drv.recovery.last_step == "scan_restart"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("error", "calls"), [
    (BleakDBusError("org.bluez.Error.NotReady", []), ["power_cycle hci0", "restart_bluetoothd"]),
    (BleakError("adapter 'hci0' not found"), []),  # nothing to power-cycle: retries only
    (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["bluez"]), []),
])
async def test_start_failures_of_a_present_adapter_escalate(
        error: BaseException, calls: list[str]) -> None:
    made, make = _factory([error, error, error, None])
    ctl = FakeControl()
    drv = BleakDriver("ble", control=ctl, scanner_factory=make, backoff_s=0.001)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: len(made) == 4 and made[3].started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert made[3].started and ctl.calls == calls
    assert drv.recovery.level == (Step.BLUETOOTHD_RESTART if calls else 0)
    assert map_bleak_error(error)[0] in ESCALATE_ON or not calls


@pytest.mark.parametrize(("cmd", "reason"), [
    (("/nonexistent/systemctl", "restart", "bluetooth"), "command_missing"),
    ((sys.executable, "-c", "import sys; sys.stderr.write('Failed to restart "
      "bluetooth.service: Access denied\\n'); sys.exit(4)"), "not_permitted"),
    ((sys.executable, "-c", "import sys; sys.stderr.write('Failed to restart bluetooth.service: "
      "Interactive authentication required.\\n'); sys.exit(1)"), "not_permitted"),
    ((sys.executable, "-c", "raise SystemExit(3)"), "command_failed"),
    ((), "disabled"),
])
async def test_bluetoothd_restart_outcomes_are_reasons(cmd: tuple[str, ...], reason: str) -> None:
    with pytest.raises(RecoverySkipped) as skip:
        await SystemControl(cmd).restart_bluetoothd()
    assert skip.value.reason == reason


async def test_bluetoothd_restart_runs_the_configured_command(tmp_path: Path) -> None:
    mark = tmp_path / "restarted"
    await SystemControl((sys.executable, "-c", f"open({str(mark)!r}, 'w')")).restart_bluetoothd()
    assert mark.exists()


async def test_power_cycle_without_a_system_bus_is_a_skip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    with pytest.raises(RecoverySkipped) as skip:
        await SystemControl(settle_s=0).power_cycle("hci0")
    assert skip.value.reason == "no_system_bus"


async def test_adapter_missing_then_back() -> None:
    gone = BleakError("adapter 'hci1' not found")
    made, make = _factory([gone, gone, None])
    sink = ListSink()
    drv = BleakDriver("ble", control=FakeControl(), adapter="hci1", scanner_factory=make,
                      backoff_s=0.001)
    task = asyncio.create_task(drv.run(sink))
    await _until(lambda: len(made) == 3 and made[2].started)
    assert drv.last_error == "no_adapter" and made[2].started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_adapter_missing_for_good_raises_reason() -> None:
    errors: list[BaseException | None] = [
        BleakBluetoothNotAvailableError("No Bluetooth adapters found.",
                                        BleakBluetoothNotAvailableReason.NO_BLUETOOTH)] * 3
    _, make = _factory(errors)
    drv = BleakDriver("ble", control=FakeControl(), scanner_factory=make, backoff_s=0.001,
                      max_failures=3)
    with pytest.raises(DriverError) as err:
        await drv.run(ListSink())
    assert err.value.reason == "no_adapter" and err.value.driver == "ble"


async def test_permission_is_fatal_at_once() -> None:
    made, make = _factory([BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", [])])
    with pytest.raises(DriverError) as err:
        await BleakDriver("ble", control=FakeControl(), scanner_factory=make).run(ListSink())
    assert err.value.reason == "dbus_permission" and len(made) == 1


async def test_passive_unsupported_falls_back_to_active(caplog: pytest.LogCaptureFixture) -> None:
    msg = ("passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled and "
           "Linux kernel >= 5.10")
    made, make = _factory([BleakError(msg)])
    drv = BleakDriver("ble", control=FakeControl(), mode="passive", scanner_factory=make)
    task = asyncio.create_task(drv.run(ListSink()))
    await _until(lambda: len(made) == 2 and made[1].started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [s.mode for s in made] == ["passive", "active"] and drv.mode == "active"
    assert "falling back to active" in caplog.text


@pytest.mark.parametrize(("exc", "reason"), [
    (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["bluez"]), "bluez_not_running"),
    (BleakDBusError("org.bluez.Error.NotReady", []), "adapter_not_ready"),
    (BleakDBusError("org.bluez.Error.InProgress", []), "adapter_busy"),
    (BleakDBusError("org.freedesktop.DBus.Error.UnknownMethod", []), "no_adapter"),
    (BleakBluetoothNotAvailableError("x", BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM),
     "dbus_permission"),
    (BleakBluetoothNotAvailableError("x", BleakBluetoothNotAvailableReason.POWERED_OFF),
     "adapter_powered_off"),
    (BleakError("passive scanning mode requires bluez or_patterns"), "passive_unsupported"),
    (FileNotFoundError(2, "No such file"), "bluez_not_running"),
    (TimeoutError(), "start_timeout"),
    (RuntimeError("boom"), "scanner_failed"),
])
def test_error_mapping(exc: BaseException, reason: str) -> None:
    assert map_bleak_error(exc)[0] == reason


def test_real_scanner_factory_builds_bleak_scanner() -> None:
    def cb(d: BLEDevice, a: AdvertisementData) -> None:
        return None
    try:
        passive = bleak_scanner_factory(cb, "passive", "hci7")
    except BleakError as exc:  # a platform without BlueZ backend support
        pytest.skip(str(exc))
    assert type(passive).__name__ == "BleakScanner"
    # Home Assistant's match-everything patterns: AD type Flags (0x01) = 0x02, 0x06, 0x1a.
    assert [(p[0], p[1], p[2]) for p in PASSIVE_OR_PATTERNS] == [
        (0, 0x01, b"\x02"), (0, 0x01, b"\x06"), (0, 0x01, b"\x1a")]
    with pytest.raises(DriverError):
        BleakDriver("ble", mode="sideways")
