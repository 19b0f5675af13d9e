"""A broker that requires a client certificate is reported as that, with what to do.

In TLS 1.3 the broker's "certificate required" alert arrives on the first read, after the
handshake returned on the client: paho saw only "connection lost", the publisher took the
missing CONNACK for an MQTT version problem (toggling v5 / 3.1.1 forever), doctor did not
try TLS at all and monitor (and the demo's subscriber) spoke plain MQTT to a TLS port.
Real Mosquitto TLS listeners (`require_certificate true`, TLS 1.3 and 1.2) with a CA and
certificates made here with `cryptography`.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from presence_gateway.adapters.mosquitto import BrokerTls, LocalBroker
from presence_gateway.adapters.outbox import Outbox
from presence_gateway.adapters.publisher import Publisher
from presence_gateway.cli.doctor import run_doctor
from presence_gateway.cli.main import main
from presence_gateway.core.config import MqttSettings
from presence_gateway.core.model import OutboundMessage


@dataclass(frozen=True)
class Pki:
    ca: str
    server: tuple[str, str]
    client: tuple[str, str]
    stranger: tuple[str, str]  # a client certificate from a CA the broker does not trust


def _issue(folder: Path, stem: str, cn: str, issuer: tuple[x509.Certificate, Any] | None,
           *, ca: bool = False, ip: str | None = None) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = _issue(folder, "ca", "store CA", None, ca=True)
    other = _issue(folder, "other-ca", "someone else's CA", None, ca=True)
    _issue(folder, "server", "broker", ca, ip="127.0.0.1")
    _issue(folder, "client", "gw-1", ca)
    _issue(folder, "stranger", "gw-1", other)

    def pair(stem: str) -> tuple[str, str]:
        return str(folder / f"{stem}.pem"), str(folder / f"{stem}.key")

    return Pki(str(folder / "ca.pem"), pair("server"), pair("client"), pair("stranger"))


def broker(mosquitto: Any, pki: Pki, tls_version: str | None = None) -> LocalBroker:
    b: LocalBroker = mosquitto(tls=BrokerTls(*pki.server, pki.ca, require_certificate=True,
                                             tls_version=tls_version))
    return b


def settings(b: LocalBroker, pki: Pki, client: tuple[str, str] | None) -> MqttSettings:
    return replace(MqttSettings(), host=b.host, port=b.port, tls=True, ca_file=pki.ca,
                   cert_file=client[0] if client else None,
                   key_file=client[1] if client else None, client_id="gw-tls-test")


async def attempt(tmp_path: Path, s: MqttSettings) -> Publisher:
    """Run a publisher with one message until it delivers it or has failed a few times."""
    ob = await Outbox.open(str(tmp_path / "o.db"), max_rows=1000, max_age_s=3600)
    await ob.append([OutboundMessage(id="m1", seq=1, topic="presence/v1/s/g/events/x",
                                     payload=b"{}")])
    pub = Publisher(s, ob, status_topic="presence/v1/s/g/status",
                    online_payload=lambda: b"online", offline_payload=b"offline",
                    backoff=(0.05, 0.2))
    task = asyncio.create_task(pub.run())
    failing_since = None
    try:
        # Until delivered, or 1 s after the first failure: several retries (backoff <= 0.2 s),
        # time enough for a protocol toggle to show in the log.
        for _ in range(500):
            if pub.acked:
                break
            if pub.last_error and failing_since is None:
                failing_since = asyncio.get_running_loop().time()
            if failing_since and asyncio.get_running_loop().time() - failing_since > 1.0:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ob.close()
    return pub


@pytest.mark.parametrize("tls_version", [None, "tlsv1.2"], ids=["tls1.3", "tls1.2"])
def test_no_client_certificate_is_reported_as_such_not_as_a_protocol_problem(
        tmp_path: Path, mosquitto: Any, pki: Pki, tls_version: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    b = broker(mosquitto, pki, tls_version)
    caplog.set_level(logging.DEBUG, logger="presence_gateway")
    pub = asyncio.run(attempt(tmp_path, settings(b, pki, None)))
    assert pub.connects == 0 and pub.last_error is not None
    assert "client certificate" in pub.last_error, pub.last_error
    assert "mqtt.tls.cert_file" in pub.last_error and "mqtt.tls.key_file" in pub.last_error
    said = caplog.text
    assert "trying 3.1.1" not in said and "CONNACK" not in said and "Unspecified" not in said


def test_a_client_certificate_from_an_unknown_ca_is_reported_as_rejected(
        tmp_path: Path, mosquitto: Any, pki: Pki) -> None:
    b = broker(mosquitto, pki)
    pub = asyncio.run(attempt(tmp_path, settings(b, pki, pki.stranger)))
    assert pub.connects == 0 and pub.last_error is not None
    # The broker sends its "unknown CA" alert and closes; when the close reaches OpenSSL
    # before the alert is read (a race: seen once in a fresh-clone CI run), all the client
    # knows is an EOF in the handshake, and the explanation says so, still naming a refused
    # certificate. Either way the user is pointed at the client certificate.
    err = pub.last_error
    assert "rejected our client certificate" in err or (
        "closed the connection during the handshake" in err and "ours is refused" in err), err


def test_with_the_client_certificate_it_delivers(tmp_path: Path, mosquitto: Any,
                                                 pki: Pki) -> None:
    b = broker(mosquitto, pki)
    pub = asyncio.run(attempt(tmp_path, settings(b, pki, pki.client)))
    assert pub.connects >= 1 and pub.acked == 1, pub.last_error


def test_doctor_checks_the_tls_handshake(tmp_path: Path, mosquitto: Any, pki: Pki) -> None:
    b = broker(mosquitto, pki)

    def doctor(client: str) -> tuple[int, str]:
        tls = f"{{ca_file: '{pki.ca}'}}"
        if client:
            tls = (f"{{ca_file: '{pki.ca}', cert_file: '{client}.pem',"
                   f" key_file: '{client}.key'}}")
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(f"mqtt: {{url: 'mqtts://{b.host}:{b.port}', tls: {tls}}}\n"
                       f"storage: {{path: '{tmp_path}/g.db'}}\n")
        lines: list[str] = []
        rc = run_doctor(str(cfg), lines.append)
        return rc, next(x for x in lines if " broker " in x)

    folder = Path(pki.ca).parent
    rc, line = doctor("")
    assert rc == 1 and line.startswith("FAIL  broker"), line
    assert "requires a client certificate" in line and "mqtt.tls.cert_file" in line, line
    rc, line = doctor(str(folder / "client"))
    assert line.startswith("ok    broker") and "answers MQTT over TLS" in line, line


def test_monitor_subscribes_over_tls_with_the_client_certificate(
        tmp_path: Path, mosquitto: Any, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    b = broker(mosquitto, pki)
    cert, key = pki.client
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"mqtt: {{url: 'mqtts://{b.host}:{b.port}', tls: {{ca_file: '{pki.ca}',"
                   f" cert_file: '{cert}', key_file: '{key}'}}}}\n")
    assert main(["monitor", "-c", str(cfg), "--seconds", "0.3"]) == 0
    assert f"on {b.host}:{b.port}" in capsys.readouterr().out
