"""The fleet fixtures themselves: MQTT crosses the NATS cluster, PostgreSQL answers."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.fleet.servers import PG_BIN, NatsCluster
from tests.mqtt_helpers import Collector


@pytest.mark.disrupts_nats
def test_mqtt_crosses_the_cluster_and_survives_a_node(nats: NatsCluster,
                                                      fleet_prefix: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    a, b, c = nats.nodes
    with Collector("127.0.0.1", b.mqtt_port, f"{fleet_prefix}/#") as sub:
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{fleet_prefix}-pub")
        pub.connect("127.0.0.1", a.mqtt_port)
        pub.loop_start()
        try:
            # A new subscription reaches the other nodes' interest graph after a moment (more
            # under load): wait until a warm-up message crosses before counting.
            deadline = time.monotonic() + 60
            while not sub.snapshot() and time.monotonic() < deadline:
                pub.publish(f"{fleet_prefix}/v2/p00/s1/gw1/warmup", b"w", 1).wait_for_publish(10)
                time.sleep(0.2)
            assert sub.snapshot(), "no message crossed the cluster in 60 s"
            with sub._lock:
                sub.messages.clear()
            infos = [pub.publish(f"{fleet_prefix}/v2/p00/s1/gw1/events", b"%d" % i, 1)
                     for i in range(20)]
            for info in infos:
                info.wait_for_publish(30)
            deadline = time.monotonic() + 30  # a loaded machine: JetStream R3 is slower
            def events() -> list[bytes]:  # late warm-up copies are on their own topic
                return [p for t, p, _ in sub.snapshot() if t.endswith("/events")]
            while len(events()) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert events() == [b"%d" % i for i in range(20)]
        finally:
            pub.disconnect()
            pub.loop_stop()
    c.kill()  # a node down: fine, the cluster is this test's own (`disrupts_nats`)
    assert not c.running


def test_postgres_answers(pg_url: str) -> None:
    port = pg_url.split(":")[2].split("/")[0]
    out = subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres",
                          "-d", pg_url.rsplit("/", 1)[1], "-Atc", "select 6*7"],
                         check=True, capture_output=True, text=True).stdout
    assert out.strip() == "42"
