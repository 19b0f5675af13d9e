"""A tiny pcap / pcapng record reader: (timestamp, link type, bytes) per packet, nothing else.

Why not scapy's RawPcapReader: it costs ~3.5 µs per record (a metadata object per packet),
which alone is most of the gateway's 5 µs budget per observation; this reader costs ~0.5 µs.
scapy's readers stay available as the fallback (`read_scapy`) and as the test oracle.

Invariants:
- The file is memory-mapped and read with struct.unpack_from: no per-record copy beyond the
  packet bytes themselves.
- Every length is checked before it is used. A malformed file raises `PcapError` with the byte
  offset; records before the damage have been yielded already (a capture cut short by a crash
  still replays up to the cut).
- pcap: both byte orders, microsecond and nanosecond magic; the link type keeps its FCS-length
  bits (parsers mask them). pcapng: sections of either byte order, interface link types and
  if_tsresol / if_tsoffset, Enhanced, Simple and obsolete Packet blocks; other blocks skipped.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_RECORD = 1 << 18  # 256 KiB: larger than any snap length; bigger means a corrupt length
# Smallest valid total length of the pcapng blocks whose fixed fields we read: header and
# trailer (12) + EPB / obsolete PB fields (20), SPB original length (4). Shorter is corrupt (it
# would make unpack_from read the next block, or past the end of the file).
_MIN_BLOCK = {6: 32, 2: 32, 3: 16}

Record = tuple[float, int, bytes]


class PcapError(ValueError):
    """The file is not a pcap/pcapng file, or is damaged at `offset`."""

    def __init__(self, message: str, offset: int = 0) -> None:
        self.offset = offset
        super().__init__(f"{message} at byte {offset}" if offset else message)


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield (ts seconds, link type, packet bytes) for every packet of a pcap or pcapng file."""
    with open(path, "rb") as fh:
        try:
            buf: bytes | mmap.mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file: mmap refuses length 0
            buf = b""
        try:
            head = buf[:4]
            if head == b"\x0a\x0d\x0d\x0a":
                yield from _pcapng(buf)
            elif len(head) == 4:
                yield from _pcap(buf)
            else:
                raise PcapError("file too short for a pcap header")
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()


def _pcap(buf: bytes | mmap.mmap) -> Iterator[Record]:
    magic = buf[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(bytes(magic))
    if endian is None:
        raise PcapError("not a pcap or pcapng file (unknown magic)")
    if len(buf) < 24:
        raise PcapError("truncated pcap header", len(buf))
    per_s = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    linktype = struct.unpack_from(endian + "I", buf, 20)[0]
    header = struct.Struct(endian + "III").unpack_from  # ts_sec, ts_frac, incl_len
    off, size = 24, len(buf)
    while off + 16 <= size:
        sec, frac, incl = header(buf, off)
        start = off + 16
        off = start + incl
        if incl > MAX_RECORD or off > size:
            raise PcapError("truncated or corrupt pcap record", start - 16)
        yield (sec + frac / per_s, linktype, buf[start:off])
    if off != size:
        raise PcapError("truncated pcap record header", off)


def _tsresol(value: int) -> int:
    """if_tsresol -> ticks per second (MSB set: a power of two, else a power of ten)."""
    return 1 << (value & 0x7F) if value & 0x80 else 10**value


def _idb(buf: bytes | mmap.mmap, e: str, off: int, end: int) -> tuple[int, int, int]:
    """Interface description block body -> (link type, ticks per second, offset seconds)."""
    linktype = struct.unpack_from(e + "H", buf, off)[0]
    per_s, tsoffset = 1_000_000, 0
    opt = off + 8
    while opt + 4 <= end:
        code, length = struct.unpack_from(e + "HH", buf, opt)
        if code == 0:
            break
        if code == 9 and length >= 1:
            per_s = _tsresol(buf[opt + 4])
        elif code == 14 and length >= 8:
            tsoffset = struct.unpack_from(e + "q", buf, opt + 4)[0]
        opt += 4 + ((length + 3) & ~3)
    return linktype, per_s, tsoffset


def _pcapng(buf: bytes | mmap.mmap) -> Iterator[Record]:
    off, size = 0, len(buf)
    e = "<"
    interfaces: list[tuple[int, int, int]] = []
    while off + 12 <= size:
        if buf[off:off + 4] == b"\x0a\x0d\x0d\x0a":  # section header: byte order may change
            bom = buf[off + 8:off + 12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise PcapError("bad pcapng byte-order magic", off)
            e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        btype, blen = struct.unpack_from(e + "II", buf, off)
        end = off + blen
        if blen < _MIN_BLOCK.get(btype, 12) or blen & 3 or end > size:
            raise PcapError("truncated or corrupt pcapng block", off)
        body = off + 8
        if btype == 1 and blen >= 20:
            interfaces.append(_idb(buf, e, body, end - 4))
        elif btype in (6, 2):  # enhanced / obsolete packet block
            if btype == 6:
                iface, high, low, caplen = struct.unpack_from(e + "IIII", buf, body)
            else:
                iface, _, high, low, caplen = struct.unpack_from(e + "HHIII", buf, body)
            data = body + 20
            if iface >= len(interfaces) or data + caplen > end - 4:
                raise PcapError("pcapng packet with unknown interface or bad length", off)
            linktype, per_s, tsoffset = interfaces[iface]
            yield (((high << 32) | low) / per_s + tsoffset, linktype, buf[data:data + caplen])
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if not interfaces:
                raise PcapError("pcapng simple packet before any interface", off)
            caplen = min(struct.unpack_from(e + "I", buf, body)[0], blen - 16)
            yield (0.0, interfaces[0][0], buf[body + 4:body + 4 + caplen])
        off = end
    if off != size:
        raise PcapError("truncated pcapng block header", off)


def read_scapy(path: str | Path) -> Iterator[Record]:
    """The same records through scapy's RawPcapReader / RawPcapNgReader (documented fallback,
    and the oracle the tests compare `iter_records` with)."""
    from scapy.utils import RawPcapNgReader, RawPcapReader

    with open(path, "rb") as fh:
        ng = fh.read(4) == b"\x0a\x0d\x0d\x0a"
    if ng:
        png = RawPcapNgReader(str(path))
        try:
            for data, meta_ng in png:
                meta: Any = meta_ng  # PacketMetadataNg; scapy's annotation names the pcap one
                yield (((meta.tshigh << 32) | meta.tslow) / meta.tsresol, meta.linktype, data)
        finally:
            png.close()
        return
    pc = RawPcapReader(str(path))
    try:
        per_s = 1e9 if pc.nano else 1e6
        for data, meta in pc:
            yield (meta.sec + meta.usec / per_s, pc.linktype, data)
    finally:
        pc.close()
