"""Shell: one paho-mqtt client and its TCP connection, driven by the asyncio loop.

paho's documented external-loop integration (examples/loop_asyncio.py, as Home Assistant runs
it): the socket's readability calls `loop_read`, its writability (registered only while paho
has bytes queued) calls `loop_write`, and a 1 s timer calls `loop_misc` (keepalive pings and
the keepalive timeout). No network thread: every paho callback runs in the event loop thread.

Invariants:
- `connect` is the only blocking step (DNS, TCP, TLS handshake); it runs in the default
  executor, bounded by paho's connect_timeout, because an asyncio-native connect cannot hand
  its socket to paho. The socket callbacks it triggers from that thread are marshalled to the
  loop with call_soon_threadsafe, so the selector is only ever touched from the loop thread.
- `connack` resolves with the broker's reason code; `closed` resolves (with a short reason)
  once the connection is over; after `detach()` the loop holds no reader, writer or timer for
  this socket and the socket is closed.
- Until CONNACK, the socket error that closed the connection is kept (`tls_failure`): paho
  reports it only as "connection lost", and in TLS 1.3 a broker's refusal of the handshake
  (no client certificate, an untrusted one) arrives as an alert on the first read, after
  connect() returned, which would otherwise pass for an MQTT protocol problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from presence_gateway.adapters.paho_fast import ChunkedClient
from presence_gateway.core.config import MqttSettings
from presence_gateway.errors import PublishError

MISC_INTERVAL_S = 1.0
# loop_read rounds per readable event for bytes the selector cannot see (TLS, chunked reads)
READS_PER_WAKE = 64


class Link:
    """Glue between one paho `Client` and the running asyncio loop (see module docstring)."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.connack: asyncio.Future[tuple[ReasonCode, Properties | None]] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.on_closed: Callable[[], None] = lambda: None
        self._thread = threading.get_ident()
        self._fd = -1
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Future[Any] | None = None
        self._where = ("", 0)
        self._trap = SocketErrorTrap()
        client.logger = self._trap  # until CONNACK only: paho logs every packet to it
        client.on_socket_open = self._sock_open
        client.on_socket_close = self._sock_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    async def connect(self, host: str, port: int, keepalive: int,
                      properties: Properties | None) -> None:
        """TCP (+TLS) connect and send CONNECT; raises OSError/ssl.SSLError on failure."""
        self._where = (host, port)
        fut = self.loop.run_in_executor(None, self._connect_blocking, host, port, keepalive,
                                        properties)
        self._connecting = fut
        await fut

    def _connect_blocking(self, host: str, port: int, keepalive: int,
                          properties: Properties | None) -> None:
        self.client.connect(host, port, keepalive, properties=properties)

    # -- socket callbacks (paho -> loop) ----------------------------------------------------
    def _in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._thread:
            fn(*args)
            return
        # From another thread: the connect executor, or the garbage collector finalizing a
        # client whose loop has ended (paho closes its socket in __del__). A closed loop has
        # no reader or writer left to undo; scheduling on it raised "Event loop is closed".
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn, *args)

    def _sock_open(self, client: Client, userdata: Any, sock: Any) -> None:
        with contextlib.suppress(OSError, AttributeError):
            # paho writes one packet per send(); without NODELAY, Nagle holds each small
            # PUBLISH until the previous segment is acknowledged.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in_loop(self._attach, sock.fileno())

    def _attach(self, fd: int) -> None:
        if self.closed.done():
            return
        self._fd = fd
        self.loop.add_reader(fd, self._read)
        self._timer = self.loop.call_later(MISC_INTERVAL_S, self._misc)

    def _sock_close(self, client: Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._unregister)

    def _want_write(self, client: Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, sock.fileno())

    def _add_writer(self, fd: int) -> None:
        if fd == self._fd and not self.closed.done():
            self.loop.add_writer(fd, self.client.loop_write)

    def _no_write(self, client: Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._remove_writer)

    def _remove_writer(self) -> None:
        if self._fd >= 0:
            self.loop.remove_writer(self._fd)

    def _read(self) -> None:
        client = self.client
        client.loop_read()
        # TLS, and a client reading in chunks (adapters/paho_fast.py), may hold bytes the
        # selector cannot see: read them now, a bounded number of rounds (under a flood each
        # round may read more), then give the loop back and go on at its next turn.
        buffered = client.buffered if isinstance(client, ChunkedClient) else None
        for _ in range(READS_PER_WAKE):
            sock = client.socket()
            if sock is None or not ((isinstance(sock, ssl.SSLSocket) and sock.pending())
                                    or (buffered is not None and buffered())):
                return
            client.loop_read()
        if not self.closed.done():
            self.loop.call_soon(self._read)

    def _misc(self) -> None:
        self._timer = None
        self.client.loop_misc()
        if self._fd >= 0 and not self.closed.done():
            self._timer = self.loop.call_later(MISC_INTERVAL_S, self._misc)

    # -- protocol callbacks -----------------------------------------------------------------
    def tls_failure(self) -> str | None:
        """Why TLS ended the connection before CONNACK (what to do), or None if it did not."""
        err = self._trap.caught
        if isinstance(err, ssl.SSLError) and not self.connack.done():
            return explain_oserror(err, *self._where)
        return None

    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode,
                    props: Properties | None) -> None:
        client.logger = None
        if not self.connack.done():
            self.connack.set_result((rc, props))

    def _on_disconnect(self, client: Client, userdata: Any, flags: DisconnectFlags,
                       rc: ReasonCode, props: Properties | None) -> None:
        self._finish(f"connection lost ({rc})")

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
            self.on_closed()

    # -- teardown ---------------------------------------------------------------------------
    def _unregister(self) -> None:
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
            self._fd = -1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def detach(self) -> None:
        """Forget the socket: no reader/writer/timer left, socket closed, `closed` resolved."""
        self._finish("closed")
        self._unregister()
        if self._connecting is not None and not self._connecting.done():
            # The executor thread is still connecting: close whatever it opens.
            self._connecting.add_done_callback(lambda _f: self._close_socket())
        self._close_socket()

    def _close_socket(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class SocketErrorTrap(logging.Logger):
    """A logger for paho that keeps the latest socket error it reports and writes nothing:
    paho swallows the OSError of a failed read or write, handing it only to its logger."""

    def __init__(self) -> None:
        super().__init__("presence_gateway.adapters.mqttlink.paho")
        self.caught: OSError | None = None

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            for arg in args:
                if isinstance(arg, OSError):
                    self.caught = arg


def tls_context(s: MqttSettings) -> ssl.SSLContext | None:
    if not s.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=s.ca_file)
        if s.cert_file:
            ctx.load_cert_chain(s.cert_file, s.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise PublishError(f"MQTT TLS setup failed: {exc}; check mqtt.ca_file, mqtt.cert_file"
                           " and mqtt.key_file") from exc
    return ctx


def explain_oserror(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"DNS: cannot resolve {host!r} ({exc.strerror}); check mqtt.host"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where} (broker not running, or wrong mqtt.port)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: certificate of {where} not trusted ({exc.verify_message}); check"
                " mqtt.ca_file and that mqtt.host matches the certificate")
    if isinstance(exc, ssl.SSLError):
        return _explain_tls(exc, where)
    if isinstance(exc, TimeoutError):
        return f"timed out connecting to {where} (host down, firewall, or wrong address)"
    return f"cannot connect to {where}: {exc.strerror or exc}"


# TLS alerts by what the broker means with them (OpenSSL's reason names).
_NO_CLIENT_CERT = {"TLSV13_ALERT_CERTIFICATE_REQUIRED"}
_CLIENT_CERT_REJECTED = {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA",
                         "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                         "SSLV3_ALERT_CERTIFICATE_REVOKED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
                         "TLSV1_ALERT_ACCESS_DENIED"}


def _explain_tls(exc: ssl.SSLError, where: str) -> str:
    reason = exc.reason or type(exc).__name__
    if reason in _NO_CLIENT_CERT:
        return (f"TLS: {where} requires a client certificate and we sent none ({reason});"
                " set mqtt.tls.cert_file and mqtt.tls.key_file to this gateway's certificate"
                " and key")
    if reason in _CLIENT_CERT_REJECTED:
        return (f"TLS: {where} rejected our client certificate ({reason}); check that"
                " mqtt.tls.cert_file is signed by a CA the broker trusts, is valid now and"
                " matches mqtt.tls.key_file")
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":  # TLS 1.2's answer to a missing certificate
        return (f"TLS handshake with {where} refused ({reason}): the broker may require a"
                " client certificate (mqtt.tls.cert_file, mqtt.tls.key_file), or it shares no"
                " TLS version or cipher with us")
    if isinstance(exc, ssl.SSLEOFError):
        # Some OpenSSL builds read the broker's closing of the handshake, not its alert.
        return (f"TLS: {where} closed the connection during the handshake ({reason}): a broker"
                " that requires a client certificate does this when none is sent or ours is"
                " refused (set mqtt.tls.cert_file and mqtt.tls.key_file to this gateway's"
                " certificate and key); or the port is not a TLS listener")
    return f"TLS handshake with {where} failed ({reason}); is the port a TLS listener?"
