"""Live Wi-Fi capture from a monitor-mode interface: raw socket -> core.wifi -> sink.offer.

Invariants:
- One AF_PACKET/SOCK_RAW socket bound to the interface, non-blocking, read by the event loop
  (`loop.add_reader`): no thread. Each readable event reads at most `max_per_wake` frames (the
  socket may hold more) and returns to the loop, which calls it again while the socket stays
  readable (selectors are level-triggered): a frame flood costs latency, never the other tasks.
  Every frame goes through the pure `gateway.core.wifi.parse_record` (link type 127,
  ts = time.time()).
- A classic BPF program in the kernel passes only frames with a RadioTap header (length >= 8)
  whose 802.11 frame is management, null or QoS-null data: beacons, ACKs and data traffic never
  wake Python. It is assembled here (15 instructions) rather than compiled by libpcap, so it
  does not depend on libpcap being installed; should the kernel refuse it, capture continues
  unfiltered (the parser ignores those frames anyway) and `self.filtered` says so.
- Delivery is `sink.offer` (never blocks; the sink's bounded queue drops and counts the oldest).
- Channel hopping runs as a task in the driver's own TaskGroup: `iw dev IF set channel N` per
  step, `dwell_s` per channel on average, each step's dwell drawn within +-25 %
  (core/presence/hopping.py `jittered_dwell`): a fixed cycle stays in step with devices that
  probe at a fixed interval, and catches them always or never. One channel: set once.
  `channels=[]`: the channel is not touched.
- Errors a user meets become DriverError with a stable reason: interface_missing,
  not_monitor_mode, permission, adapter_gone, iw_missing, channel_hop_failed. The socket is
  closed and the reader removed in `finally`.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import random
import socket
import struct
import time
from pathlib import Path

from presence_gateway.core.model import Rejection
from presence_gateway.core.presence.hopping import jittered_dwell
from presence_gateway.core.wifi.frames import parse_record
from presence_gateway.drivers.base import Sink
from presence_gateway.errors import DriverError

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
ARPHRD_IEEE80211_RADIOTAP = 803
SYS_NET = Path("/sys/class/net")
CHANNELS_ALL = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 36, 40, 44, 48, 52, 56, 60, 64,
                100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140, 149, 153, 157, 161, 165]
_GONE = {errno.ENETDOWN, errno.ENODEV, errno.ENXIO, errno.EIO}
# Frames per readable event (about a millisecond of parsing at a few µs each): the ticker, the
# consumer and the publisher run between batches however fast the air fills the socket.
MAX_PER_WAKE = 256

# (code, jt, jf, k): X = RadioTap length; reject if < 8; accept FC type management (0x0c bits
# clear), null data (0x48) and QoS null (0xc8); the parser checks the rest (ToDS, lengths).
BPF_MGMT_AND_NULL = (
    (0x30, 0, 0, 3),           # 0  ldb [3]          high byte of it_len
    (0x64, 0, 0, 8),           # 1  lsh #8
    (0x07, 0, 0, 0),           # 2  tax
    (0x30, 0, 0, 2),           # 3  ldb [2]          low byte
    (0x4C, 0, 0, 0),           # 4  or x
    (0x07, 0, 0, 0),           # 5  tax              X = it_len
    (0x35, 0, 7, 8),           # 6  jge #8           else -> 14 (drop)
    (0x50, 0, 0, 0),           # 7  ldb [x+0]        frame control byte 0
    (0x54, 0, 0, 0x0C),        # 8  and #0x0c        type bits
    (0x15, 3, 0, 0),           # 9  jeq #0           management -> 13
    (0x50, 0, 0, 0),           # 10 ldb [x+0]
    (0x15, 1, 0, 0x48),        # 11 jeq #0x48        null data -> 13
    (0x15, 0, 1, 0xC8),        # 12 jeq #0xc8        QoS null -> 13, else 14
    (0x06, 0, 0, 0x40000),     # 13 ret #262144      accept
    (0x06, 0, 0, 0),           # 14 ret #0           drop
)


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog {u16 len; ptr filter})."""
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def interface_type(interface: str) -> int | None:
    """ARPHRD type from sysfs (803 = 802.11 + RadioTap, i.e. monitor mode), None if absent."""
    try:
        return int((SYS_NET / interface / "type").read_text().strip())
    except (OSError, ValueError):
        return None


class WifiMonitorDriver:
    """Runs until cancelled; raises DriverError when the interface cannot be (or stay) used."""

    def __init__(self, name: str, interface: str, channels: list[int] | None, dwell_s: float,
                 sensor: str = "", require_monitor: bool = True,
                 max_per_wake: int = MAX_PER_WAKE) -> None:
        self.name = name
        self.max_per_wake = max_per_wake
        self.interface = interface
        self.channels = list(CHANNELS_ALL if channels is None else channels)
        self.dwell_s = dwell_s
        self.sensor = sensor
        self.require_monitor = require_monitor  # False only to test the socket path on `lo`
        self.received = 0
        self.ignored = 0
        self.filtered = False
        self.hop_errors = 0
        self._draw = random.Random().random  # seeded by the OS: gateways are not in step

    def _error(self, reason: str, detail: str) -> DriverError:
        return DriverError(self.name, reason, f"{self.interface}: {detail}")

    def open(self) -> socket.socket:
        """Check the interface and open the filtered, non-blocking raw socket."""
        kind = interface_type(self.interface)
        if kind is None:
            raise self._error("interface_missing", "no such network interface")
        if self.require_monitor and kind != ARPHRD_IEEE80211_RADIOTAP:
            raise self._error("not_monitor_mode", f"link type {kind}, monitor mode is 803; run "
                              f"`presence-gateway radio monitor {self.interface}`")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise self._error("permission", "raw sockets need CAP_NET_RAW (run as root, or "
                              "`setcap cap_net_raw,cap_net_admin+eip` on the python binary)"
                              ) from None
        try:
            try:
                attach_filter(sock, BPF_MGMT_AND_NULL)
                self.filtered = True
            except OSError:
                self.filtered = False  # kernel refused the program: the parser filters instead
            sock.bind((self.interface, ETH_P_ALL))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            missing = exc.errno in (errno.ENODEV, errno.ENXIO)
            reason = "interface_missing" if missing else "adapter_gone"
            raise self._error(reason, exc.strerror or str(exc)) from None
        return sock

    async def run(self, sink: Sink) -> None:
        sock = self.open()
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), self._drain, sock, sink, failed)
        try:
            async with asyncio.TaskGroup() as tg:
                if self.channels:
                    tg.create_task(self._hop())
                tg.create_task(self._wait(failed))
        except* DriverError as group:
            raise group.exceptions[0] from None
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    @staticmethod
    async def _wait(failed: asyncio.Future[None]) -> None:
        await failed

    def _drain(self, sock: socket.socket, sink: Sink, failed: asyncio.Future[None]) -> None:
        sensor = self.sensor
        for _ in range(self.max_per_wake):  # bounded: see MAX_PER_WAKE
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                if not failed.done():
                    reason = "adapter_gone" if exc.errno in _GONE else "capture_failed"
                    failed.set_exception(self._error(reason, exc.strerror or str(exc)))
                return
            if addr[2] == PACKET_OUTGOING:
                continue  # frames this host transmits are not someone nearby
            self.received += 1
            result = parse_record(data, 127, time.time(), sensor)
            if result is None:
                self.ignored += 1
            elif isinstance(result, Rejection):
                sink.reject(result)
            else:
                sink.offer(result)

    async def _set_channel(self, channel: int) -> bool:
        try:
            proc = await asyncio.create_subprocess_exec(
                "iw", "dev", self.interface, "set", "channel", str(channel),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        except FileNotFoundError:
            raise self._error("iw_missing", "channel hopping needs `iw` (apt install iw)"
                              ) from None
        try:
            return await asyncio.wait_for(proc.wait(), 2.0) == 0
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False

    async def _hop(self) -> None:
        """Cycle through the plan; a channel the adapter refuses is counted and skipped, and a
        whole cycle of refusals means the adapter is gone or cannot hop."""
        if len(self.channels) == 1:
            if not await self._set_channel(self.channels[0]):
                raise self._error("channel_hop_failed", f"cannot tune to {self.channels[0]}")
            return
        while True:
            ok = 0
            for channel in self.channels:
                if await self._set_channel(channel):
                    ok += 1
                else:
                    self.hop_errors += 1
                    continue
                await asyncio.sleep(jittered_dwell(self.dwell_s, self._draw()))
            if not ok:
                if not (SYS_NET / self.interface).exists():
                    raise self._error("adapter_gone", "interface disappeared")
                raise self._error("channel_hop_failed", f"no channel of {self.channels} works")
