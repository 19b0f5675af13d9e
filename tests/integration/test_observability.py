"""/metrics and /healthz of a live gateway (wall clock, ticker, real Mosquitto), scraped over
HTTP as Prometheus and a fleet's health check would.

Two radios: a Wi-Fi one that works (a phone probing) and a BLE one whose adapter is missing
(DriverError on every start). The health check must say 503 naming the BLE driver and its
reason; the metrics must count the Wi-Fi observations by radio and kind, the events by type,
the driver's restarts and the broker connection. When the broken radio is removed from the
configuration the same gateway is healthy (200).
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from presence_gateway.adapters.mosquitto import free_port
from presence_gateway.core.config import parse_config
from presence_gateway.errors import DriverError
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service
from tests.integration.test_service_guard import Radio1


class MissingAdapter:
    name = "ble"

    async def run(self, sink: Any) -> None:
        raise DriverError("ble", "adapter_missing", "hci0: no such adapter")


# Loopback only: no proxy from the environment may stand between the test and the gateway.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, bytes]:
    try:
        with OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def run_live(tmp_path: Path, broker: Any, drivers: list[Any],
             scrape: Any) -> Any:
    port = free_port()
    cfg = parse_config(f"store: {{id: s1}}\ngateway: {{id: gw1}}\n"
                       f"mqtt: {{url: '{broker.url}'}}\nhttp: {{listen: '127.0.0.1:{port}'}}\n"
                       f"storage: {{path: '{tmp_path / 'gw.db'}', batch_interval: 50ms}}\n",
                       str(tmp_path / "gw.yaml"))
    svc = Service(cfg, RunOptions(mode=Mode.LIVE, flush_timeout_s=10), drivers)

    async def scenario() -> Any:
        task = asyncio.create_task(svc.run())
        deadline = time.monotonic() + 15
        while svc.runtime is None or svc.runtime.core.pipeline.observations < 10 or \
                svc.runtime.publisher is None or not svc.runtime.publisher.connected:
            assert not task.done() and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        result = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}")
        svc.stop_event.set()
        await task
        return result

    return asyncio.run(scenario())


def test_metrics_and_health_of_a_live_gateway_with_a_missing_radio(
        tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()

    def scrape(base: str) -> Any:
        time.sleep(1.2)  # the supervisor restarts the failing driver after ~1 s
        return get(base + "/healthz"), get(base + "/metrics")

    (code, health), (mcode, metrics) = run_live(tmp_path, broker, [Radio1(), MissingAdapter()],
                                                scrape)
    assert code == 503
    body = orjson.loads(health)
    assert body["status"] == "unhealthy"
    assert body["problems"] == {"driver:ble": "adapter_missing (hci0: no such adapter)"}
    assert body["drivers"]["radio"]["ok"] is True and body["mqtt"]["connected"] is True
    assert mcode == 200
    m = samples(metrics)
    assert m[("presence_gateway_observations_total",
              (("kind", "probe_request"), ("radio", "wifi")))] >= 10
    assert m[("presence_gateway_driver_up", (("driver", "ble"),))] == 0
    assert m[("presence_gateway_driver_up", (("driver", "radio"),))] == 1
    assert m[("presence_gateway_driver_restarts_total", (("driver", "ble"),))] >= 1
    assert m[("presence_gateway_mqtt_connected", ())] == 1
    assert m[("presence_gateway_mqtt_connects_total", ())] == 1
    assert ("presence_gateway_outbox_depth", ()) in m
    assert ("presence_gateway_outbox_oldest_age_seconds", ()) in m
    assert any(k[0] == "presence_gateway_events_total" and v > 0 for k, v in m.items())
    assert all(k[0].startswith("presence_gateway_") for k in m)


def test_healthy_gateway_answers_200(tmp_path: Path, mosquitto: Any) -> None:
    broker = mosquitto()
    code, body = run_live(tmp_path, broker, [Radio1()], lambda base: get(base + "/healthz"))
    assert code == 200, body
    assert orjson.loads(body)["problems"] == {}


def test_a_ble_driver_retrying_on_its_own_is_unhealthy_before_it_gives_up(
        tmp_path: Path, mosquitto: Any) -> None:
    """bleak's real BleakError from every start: the driver retries with
    backoff (no DriverError for a while), and /healthz already names it with the reason."""
    from bleak.exc import BleakError

    from presence_gateway.drivers.ble_bleak import BleakDriver
    from tests.drivers.test_ble_bleak import FakeControl, FakeScanner

    broker = mosquitto()

    def failing(cb: Any, mode: str, adapter: str) -> FakeScanner:
        return FakeScanner(cb, mode, adapter, BleakError("org.bluez.Error.NotReady"))

    ble = BleakDriver("ble", control=FakeControl(), scanner_factory=failing, backoff_s=0.05,
                      max_failures=10_000)

    def scrape(base: str) -> Any:
        time.sleep(0.5)
        return get(base + "/healthz"), get(base + "/metrics")

    (code, health), (_, metrics) = run_live(tmp_path, broker, [Radio1(), ble], scrape)
    body = orjson.loads(health)
    assert code == 503 and body["problems"]["driver:ble"] == "scanner_failed", body
    assert body["drivers"]["ble"]["restarts"] == 0, "the supervisor never saw it fail"
    assert samples(metrics)[("presence_gateway_driver_up", (("driver", "ble"),))] == 0
