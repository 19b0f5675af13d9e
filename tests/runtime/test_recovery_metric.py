"""/metrics carries the live BLE driver's recovery counters (drivers without them add nothing)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from presence_gateway.drivers.ble_bleak import BleakDriver
from presence_gateway.drivers.ble_recovery import RecoverySkipped
from presence_gateway.drivers.fake import FakeDriver
from presence_gateway.runtime.observe import recovery_metric


class DeniedBluetoothd:
    """Power-cycles work; bluetoothd may not be restarted (no polkit rule)."""

    async def power_cycle(self, adapter: str) -> None:
        return None

    async def restart_bluetoothd(self) -> None:
        raise RecoverySkipped("not_permitted", "Access denied")


async def test_recovery_steps_are_counters_by_driver_and_step() -> None:
    ble = BleakDriver("ble", control=DeniedBluetoothd())
    for _ in range(4):  # scan restart, power-cycle, bluetoothd (skipped), scan restart
        await ble.recovery.escalate("no advert for 90 s")
    drivers = [ble, FakeDriver("idle")]

    class One(Collector):
        def collect(self) -> Iterator[Metric]:
            yield recovery_metric(drivers)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    got = {(s.name, s.labels["driver"], s.labels["step"]): s.value
           for f in text_string_to_metric_families(generate_latest(registry).decode())
           for s in f.samples if s.name.endswith("_total")}
    name = "presence_gateway_ble_recoveries_total"
    assert got == {(name, "ble", "scan_restart"): 2, (name, "ble", "adapter_reset"): 1,
                   (name, "ble", "bluetoothd_restart"): 0, (name, "ble", "skipped"): 1}
