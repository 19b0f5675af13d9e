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
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from presence_gateway.core.config import MqttSettings
from presence_gateway.errors import PublishError

MISC_INTERVAL_S = 1.0


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
        client.on_socket_open = self._sock_open
        client.on_socket_close = self._sock_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    async def connect(self, host: str, port: int, keepalive: int,
                      properties: Properties | None) -> None:
        """TCP (+TLS) connect and send CONNECT; raises OSError/ssl.SSLError on failure."""
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
        else:
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
        # TLS may hold decrypted bytes the selector cannot see; drain them now.
        sock = client.socket()
        while isinstance(sock, ssl.SSLSocket) and sock.pending():
            client.loop_read()
            sock = client.socket()

    def _misc(self) -> None:
        self._timer = None
        self.client.loop_misc()
        if self._fd >= 0 and not self.closed.done():
            self._timer = self.loop.call_later(MISC_INTERVAL_S, self._misc)

    # -- protocol callbacks -----------------------------------------------------------------
    def _on_connect(self, client: Client, userdata: Any, flags: ConnectFlags, rc: ReasonCode,
                    props: Properties | None) -> None:
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
        return f"TLS handshake with {where} failed ({exc.reason}); is the port a TLS listener?"
    if isinstance(exc, TimeoutError):
        return f"timed out connecting to {where} (host down, firewall, or wrong address)"
    return f"cannot connect to {where}: {exc.strerror or exc}"
