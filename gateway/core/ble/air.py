"""BLE air captures -> advertising PDUs: LE link layer (pcap 251/256/272) and btsnoop HCI reports.

Pure parsing over bytes; the file shell is drivers/ble_pcap.py. Every bound is checked before it
is read: untrusted (often SDR bit-flipped) bytes give an `AirAdvert`, a `Rejection` with a short
reason, or None for a well-formed frame that carries no advertiser (data channel, SCAN_REQ,
CONNECT_IND, ADV_EXT_IND without AdvA). Nothing here raises on any input.

Layouts (all multi-byte link-layer fields are little-endian on air):
- LL packet: access address (4) | header (2: type 0-3, ChSel 5, TxAdd 6, RxAdd 7; length) |
  payload (length) | CRC (3). Advertising PDUs use access address 0x8E89BED6.
- 256 (LE_LL_WITH_PHDR): 10-byte pseudo header before the LL packet: RF channel (0..39, by
  frequency), signal dBm (int8), noise dBm, AA offenses, reference AA (4), flags (LE u16:
  0x0002 signal valid, 0x0400 CRC checked, 0x0800 CRC valid).
- 272 (Nordic nRF Sniffer, protocol 2/3): board (1) | payload length (2) | protocol version (1) |
  packet counter (2) | packet id (1) | header length (1) | flags (1: bit0 CRC OK, bits 4-6 PHY,
  2 = LE Coded) | channel index (1) | RSSI (1, minus dBm) | event counter (2) | timestamp (4),
  then the LL packet, with one CI byte after the access address on LE Coded.
- Legacy PDUs ADV_IND/ADV_DIRECT_IND/ADV_NONCONN_IND/SCAN_RSP/ADV_SCAN_IND start with AdvA (6);
  type 7 (ADV_EXT_IND / AUX_*) has the common extended payload: ext header length (6 bits) +
  AdvMode, then flags (AdvA, TargetA, CTEInfo, ADI, AuxPtr, SyncInfo, TxPower) and the fields in
  that order, ACAD to the end of the header, then AdvData.
- Addresses are reversed to display order (first printed octet first) before they leave here.
- btsnoop v1 (datalink 1002, H4): records of orig len, incl len, flags, drops (BE u32) and a BE
  u64 timestamp in µs since year 0; HCI LE Meta events 0x02 (advertising report, reports parsed
  one after another as BlueZ does) and 0x0D (extended advertising report, 24 fixed bytes each).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from presence_gateway.core.model import Radio, Rejection

ADV_AA = 0x8E89BED6
LINKTYPE_LE_LL = 251
LINKTYPE_LE_LL_PHDR = 256
LINKTYPE_NORDIC = 272
BTSNOOP_MAGIC = b"btsnoop\0"
BTSNOOP_HEADER_LEN = 16  # magic, version, datalink
BTSNOOP_EPOCH_DELTA_US = 0x00DCDDB30F2F8000  # µs from 0000-01-01 to 1970-01-01

PDU_NAMES = (
    "ADV_IND",
    "ADV_DIRECT_IND",
    "ADV_NONCONN_IND",
    "SCAN_REQ",
    "SCAN_RSP",
    "CONNECT_IND",
    "ADV_SCAN_IND",
    "ADV_EXT_IND",
    "AUX_CONNECT_RSP",
)
_LEGACY_WITH_ADVA = frozenset({0, 1, 2, 4, 6})
_NO_ADVERTISER = frozenset({3, 5, 8})  # SCAN_REQ (ScanA), CONNECT_IND (InitA), AUX_CONNECT_RSP
_EXT_FIELD_LEN = ((0x02, 6), (0x04, 1), (0x08, 2), (0x10, 3), (0x20, 18), (0x40, 1))
_HCI_LEGACY_TYPES = ("ADV_IND", "ADV_DIRECT_IND", "ADV_SCAN_IND", "ADV_NONCONN_IND", "SCAN_RSP")
# Extended report event types with the legacy bit (Core Vol 4 Part E 7.7.65.13).
_EXT_LEGACY = {
    0x13: "ADV_IND",
    0x15: "ADV_DIRECT_IND",
    0x12: "ADV_SCAN_IND",
    0x10: "ADV_NONCONN_IND",
    0x1B: "SCAN_RSP",
    0x1A: "SCAN_RSP",
}
_ADDR_TYPES = ("public", "random", "public", "random")  # HCI 2/3: resolved identity addresses
_REJ: dict[str, Rejection] = {}


@dataclass(frozen=True, slots=True)
class AirAdvert:
    """One advertiser seen on air or reported by a controller (plain values, display order)."""

    ts: float
    address: bytes
    address_type: str  # "public" | "random"
    rssi: int | None
    channel: int | None  # BLE channel index 0..39 (37/38/39 primary advertising)
    pdu: str  # PDU_NAMES entry, or for HCI the report's event type
    data: bytes  # AD structures (advertising data or scan response), unparsed
    tx_power: int | None = None  # from an extended header / extended report, if present

    @property
    def is_scan_response(self) -> bool:
        return self.pdu in ("SCAN_RSP", "AUX_SCAN_RSP")


def _rej(reason: str) -> Rejection:
    r = _REJ.get(reason)
    if r is None:
        r = _REJ[reason] = Rejection(Radio.BLE, reason)
    return r


def rf_to_channel_index(rf: int) -> int | None:
    """RF channel (by frequency, 2402 + 2*rf MHz) -> BLE channel index."""
    if rf == 0:
        return 37
    if rf == 12:
        return 38
    if rf == 39:
        return 39
    if 1 <= rf <= 11:
        return rf - 1
    if 13 <= rf <= 38:
        return rf - 2
    return None


def _ext_header(p: bytes) -> tuple[bytes | None, int | None, bytes] | Rejection:
    """Common extended advertising payload -> (AdvA LE or None, tx power, AdvData)."""
    if not p:
        return _rej("ext_truncated")
    hlen = p[0] & 0x3F
    if 1 + hlen > len(p):
        return _rej("ext_header_overrun")
    if hlen == 0:
        return None, None, p[1:]
    flags, pos, end = p[1], 2, 1 + hlen
    adva: bytes | None = None
    if flags & 0x01:
        adva, pos = p[pos : pos + 6], pos + 6
    tx: int | None = None
    for bit, size in _EXT_FIELD_LEN:
        if flags & bit:
            if bit == 0x40 and pos < end:
                tx = p[pos] - 256 if p[pos] > 127 else p[pos]
            pos += size
    if pos > end:
        return _rej("ext_header_overrun")
    return adva, tx, p[end:]


def parse_pdu(
    pdu: bytes, ts: float, channel: int | None, rssi: int | None
) -> AirAdvert | Rejection | None:
    """Advertising-channel PDU (header + payload, no AA, no CRC) -> advertiser or reason."""
    if len(pdu) < 2:
        return _rej("ll_truncated")
    h0, length = pdu[0], pdu[1]
    ptype = h0 & 0x0F
    if len(pdu) < 2 + length:
        return _rej("ll_truncated")
    payload = pdu[2 : 2 + length]
    address_type = "random" if h0 & 0x40 else "public"
    if ptype in _LEGACY_WITH_ADVA:
        if not 6 <= length <= 37 or (ptype == 1 and length != 12):
            return _rej("ll_bad_length")
        data = b"" if ptype == 1 else payload[6:]
        return AirAdvert(ts, payload[5::-1], address_type, rssi, channel, PDU_NAMES[ptype], data)
    if ptype in _NO_ADVERTISER:
        return None
    if ptype != 7:
        return _rej("ll_bad_pdu_type")
    ext = _ext_header(payload)
    if isinstance(ext, Rejection):
        return ext
    adva, tx, data = ext
    if adva is None:
        return None  # ADV_EXT_IND pointing to an AUX packet: the advertiser is over there
    name = "ADV_EXT_IND" if channel is None or channel >= 37 else "AUX_ADV_IND"
    return AirAdvert(ts, adva[::-1], address_type, rssi, channel, name, data, tx)


def _ll(
    ll: bytes, ts: float, channel: int | None, rssi: int | None, coded: bool = False
) -> AirAdvert | Rejection | None:
    """LL packet (AA [CI] header payload CRC) -> parse_pdu, None for non-advertising AAs."""
    if len(ll) < 4:
        return _rej("ll_truncated")
    if int.from_bytes(ll[:4], "little") != ADV_AA:
        return None
    start = 5 if coded else 4
    if len(ll) < start + 2 or len(ll) < start + 2 + ll[start + 1] + 3:
        return _rej("ll_truncated")  # header says more than was captured (CRC included)
    return parse_pdu(ll[start:-3], ts, channel, rssi)


def _phdr(data: bytes, ts: float) -> AirAdvert | Rejection | None:
    if len(data) < 10:
        return _rej("phdr_truncated")
    rf, signal = data[0], data[1]
    flags = data[8] | (data[9] << 8)
    if flags & 0x0C00 == 0x0400:  # CRC checked and not valid
        return _rej("crc_bad")
    rssi = (signal - 256 if signal > 127 else signal) if flags & 0x0002 else None
    return _ll(data[10:], ts, rf_to_channel_index(rf), rssi)


def _nordic(data: bytes, ts: float) -> AirAdvert | Rejection | None:
    if len(data) < 8:
        return _rej("nordic_truncated")
    start = 7 + data[7]
    if data[3] < 2 or data[7] < 10 or len(data) < start:
        return _rej("nordic_bad_header")
    flags, channel, rssi = data[8], data[9], -data[10]
    if not flags & 0x01:
        return _rej("crc_bad")
    return _ll(
        data[start:], ts, channel if channel <= 39 else None, rssi, coded=(flags >> 4) & 0x07 == 2
    )


def parse_ll_record(data: bytes, linktype: int, ts: float) -> AirAdvert | Rejection | None:
    """One pcap record of link type 251, 256 or 272 -> advertiser, rejection, or None."""
    if linktype == LINKTYPE_LE_LL_PHDR:
        return _phdr(data, ts)
    if linktype == LINKTYPE_NORDIC:
        return _nordic(data, ts)
    if linktype == LINKTYPE_LE_LL:
        return _ll(data, ts, None, None)
    return _rej("unsupported_linktype")


# --- btsnoop / HCI ------------------------------------------------------------------------


def _int8(b: int) -> int:
    return b - 256 if b > 127 else b


def _legacy_reports(ev: bytes, ts: float) -> Iterator[AirAdvert | Rejection]:
    """LE Advertising Report parameters after the subevent byte."""
    if not ev:
        yield _rej("hci_truncated")
        return
    if ev[0] == 1 and len(ev) >= 11:
        # One report (the norm): it ends with the event, RSSI last. Trusting the event's end
        # over Length_Data is what beacontools does; both agree on every conforming event.
        etype, atype = ev[1], ev[2]
        if etype > 4 or atype > 3:
            yield _rej("hci_bad_report")
            return
        yield AirAdvert(
            ts,
            ev[8:2:-1],
            _ADDR_TYPES[atype],
            _int8(ev[-1]),
            None,
            _HCI_LEGACY_TYPES[etype],
            ev[10:-1],
        )
        return
    pos = 1
    for _ in range(ev[0]):
        if pos + 9 > len(ev) or pos + 9 + ev[pos + 8] + 1 > len(ev):
            yield _rej("hci_truncated")
            return
        etype, atype, n = ev[pos], ev[pos + 1], ev[pos + 8]
        if etype > 4 or atype > 3:
            yield _rej("hci_bad_report")
            return
        yield AirAdvert(
            ts,
            ev[pos + 7 : pos + 1 : -1],
            _ADDR_TYPES[atype],
            _int8(ev[pos + 9 + n]),
            None,
            _HCI_LEGACY_TYPES[etype],
            ev[pos + 9 : pos + 9 + n],
        )
        pos += 10 + n


def _extended_reports(ev: bytes, ts: float) -> Iterator[AirAdvert | Rejection]:
    if not ev:
        yield _rej("hci_truncated")
        return
    pos = 1
    for _ in range(ev[0]):
        if pos + 24 > len(ev) or pos + 24 + ev[pos + 23] > len(ev):
            yield _rej("hci_truncated")
            return
        etype = ev[pos] | (ev[pos + 1] << 8)
        atype, n = ev[pos + 2], ev[pos + 23]
        tx, rssi = _int8(ev[pos + 12]), _int8(ev[pos + 13])
        if atype <= 3:  # 0xFF: anonymous advertiser, nothing to attribute
            name = (
                _EXT_LEGACY.get(etype & 0x1F, "ADV_LEGACY")
                if etype & 0x10
                else ("AUX_SCAN_RSP" if etype & 0x08 else "AUX_ADV_IND")
            )
            yield AirAdvert(
                ts,
                ev[pos + 8 : pos + 2 : -1],
                _ADDR_TYPES[atype],
                None if rssi == 127 else rssi,
                None,
                name,
                ev[pos + 24 : pos + 24 + n],
                None if tx == 127 else tx,
            )
        pos += 24 + n


def hci_event_reports(event: bytes, ts: float) -> Iterator[AirAdvert | Rejection]:
    """An HCI event (event code, length, parameters; no H4 byte) -> its advertising reports."""
    if len(event) < 3 or event[0] != 0x3E:
        return
    # A declared length longer than the bytes present is tolerated (seen in the wild, and
    # beacontools ignores it): every report carries its own lengths and is bounds-checked.
    params = event[2 : 2 + event[1]]
    if params[:1] == b"\x02":
        yield from _legacy_reports(params[1:], ts)
    elif params[:1] == b"\x0d":
        yield from _extended_reports(params[1:], ts)


def btsnoop_header_error(data: bytes) -> Rejection | None:
    """None for a btsnoop v1 H4 (datalink 1002) file header, else the reason it is not one."""
    if len(data) < BTSNOOP_HEADER_LEN or not data.startswith(BTSNOOP_MAGIC):
        return _rej("btsnoop_bad_header")
    version, datalink = struct.unpack_from(">II", data, 8)
    if version != 1 or datalink != 1002:
        return _rej("btsnoop_unsupported_datalink")
    return None


def btsnoop_packets(data: bytes) -> Iterator[tuple[int, float, bytes]]:
    """(offset after the record, capture ts, H4 packet) for every complete record after the
    file header. Stops at a record that runs past the end: the caller compares the last offset
    with len(data) to tell a clean end from a cut or damaged tail (and where it starts)."""
    pos, size = BTSNOOP_HEADER_LEN, len(data)
    while pos + 24 <= size:
        incl = int.from_bytes(data[pos + 4 : pos + 8], "big")
        end = pos + 24 + incl
        if end > size:
            return
        stamp = int.from_bytes(data[pos + 16 : pos + 24], "big")
        yield end, (stamp - BTSNOOP_EPOCH_DELTA_US) / 1e6, data[pos + 24 : end]
        pos = end


def iter_btsnoop_reports(data: bytes) -> Iterator[AirAdvert | Rejection]:
    """A whole btsnoop v1 H4 file -> every LE (extended) advertising report, in order; a cut
    or damaged tail ends it with one `btsnoop_truncated` rejection."""
    bad = btsnoop_header_error(data)
    if bad is not None:
        yield bad
        return
    reached = BTSNOOP_HEADER_LEN  # end of the last complete record
    for end, ts, packet in btsnoop_packets(data):
        reached = end
        if packet[:1] == b"\x04":
            yield from hci_event_reports(packet[1:], ts)
    if reached != len(data):
        yield _rej("btsnoop_truncated")
