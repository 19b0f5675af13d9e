"""systemd notification (Type=notify): READY, WATCHDOG, STOPPING and STATUS datagrams.

The protocol is one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (an abstract
socket when it starts with '@'); without that variable every call is a no-op, so the gateway
runs the same under systemd, in a shell and in tests.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        watchdog_us = os.environ.get("WATCHDOG_USEC", "")
        # Ping at half the configured interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = int(watchdog_us) / 2e6 if watchdog_us.isdigit() else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *states: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto("\n".join(states).encode(), self.address)
            return True
        except OSError:  # systemd went away or the socket is not ours: never fatal
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")
