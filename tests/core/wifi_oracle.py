"""scapy as the oracle for gateway.core.wifi: the same fields, extracted from scapy's dissection.

Test support only (scapy never enters the core). `scapy_fields` returns a comparable dict for a
frame our parser must turn into a Sighting, None for a frame it must ignore, and REJECT for one
it must refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scapy.layers.dot11 import (
    Dot11,
    Dot11AssoReq,
    Dot11Elt,
    Dot11ProbeReq,
    Dot11ReassoReq,
    PrismHeader,
    RadioTap,
)
from scapy.packet import Packet, Raw
from scapy.utils import RawPcapReader

from presence_gateway.core.model import Rejection, Sighting
from presence_gateway.core.privacy import format_mac

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "tests" / "data" / "wifi"
SHARED_WIFI = REPO / ".." / "shared" / "data" / "captures" / "wifi"
REJECT = "reject"


def channel_from_freq(freq: int) -> int | None:
    """Independent of the parser's table on purpose: the arithmetic of 802.11 Annex E."""
    if freq == 2484:
        return 14
    if 2412 <= freq <= 2472:
        return (freq - 2407) // 5
    if 5160 <= freq <= 5885:
        return (freq - 5000) // 5
    if 5955 <= freq <= 7115:
        return (freq - 5950) // 5
    return None


def records(path: Path) -> Iterator[tuple[bytes, int]]:
    reader = RawPcapReader(str(path))
    try:
        linktype = reader.linktype
        for data, _meta in reader:
            yield data, linktype
    finally:
        reader.close()


def _kind(dot11: Packet) -> str | None:
    if dot11.type == 0 and dot11.subtype == 4:
        return "probe_request"
    if dot11.type == 0 and dot11.subtype in (0, 2):
        return "association_request"
    if dot11.type == 2 and dot11.subtype in (4, 12):
        fc = int(dot11.FCfield)
        return "null_data" if fc & 0x03 == 0x01 else None
    return None


def _elements(dot11: Packet) -> dict[str, Any] | str:
    ids: list[int] = []
    ouis: list[int] = []
    ssid: bytes | None = None
    ds: int | None = None
    elt = dot11.getlayer(Dot11Elt)
    body = dot11.getlayer(Dot11ProbeReq) or dot11.getlayer(Dot11AssoReq)
    body = body or dot11.getlayer(Dot11ReassoReq)
    if body is not None and isinstance(body.payload, Raw):
        return REJECT  # fixed fields present but the first element is cut short
    while isinstance(elt, Dot11Elt):
        raw = elt.original[: 2 + elt.len]  # the dissected bytes, not a rebuild
        if len(raw) != 2 + elt.len:
            return REJECT  # an element running past the frame
        ids.append(elt.ID)
        info = raw[2:]
        if elt.ID == 0 and ssid is None and len(ids) == 1:
            ssid = info or None
        if elt.ID == 3 and info:
            ds = info[0]
        if elt.ID == 221:
            ouis.append(int.from_bytes(info[:3], "big"))
        elt = elt.payload
    if isinstance(elt, Raw) and len(elt.load) > 0:
        return REJECT  # trailing bytes that are not a whole element
    return {"ie_ids": tuple(ids), "vendor_ouis": tuple(ouis), "ssid": ssid, "ds": ds}


def _radio(pkt: Packet, linktype: int) -> tuple[Packet | None, int | None, int | None] | str:
    lt = linktype & 0xFFFF
    if lt == 127:
        if pkt.version != 0 or pkt.len > len(pkt.original) or "badFCS" in str(pkt.Flags):
            return REJECT
        present = str(pkt.present)
        freq = pkt.ChannelFrequency if "Channel" in present else None
        rssi = pkt.dBm_AntSignal if "dBm_AntSignal" in present else None
        return pkt.getlayer(Dot11), rssi, (freq or None)
    if lt == 119:
        freq = 2407 + 5 * pkt.channel if 1 <= pkt.channel <= 13 else None
        return pkt.getlayer(Dot11), pkt.signal if pkt.signal_status == 0 else None, freq
    return pkt.getlayer(Dot11), None, None


def scapy_fields(data: bytes, linktype: int) -> dict[str, Any] | str | None:
    layer = {127: RadioTap, 105: Dot11, 119: PrismHeader}.get(linktype & 0xFFFF)
    if layer is None:
        return REJECT
    try:
        pkt = layer(data)
        radio = _radio(pkt, linktype)
    except Exception:  # scapy itself gives up on this input (e.g. radiotap-heapoverflow)
        return REJECT
    if isinstance(radio, str):
        return radio
    dot11, rssi, freq = radio
    if dot11 is None or dot11.proto != 0:
        return REJECT
    kind = _kind(dot11)
    if kind is None:
        return None
    out: dict[str, Any] = {"kind": kind, "address": dot11.addr2, "rssi": rssi, "freq": freq,
                           "seq": dot11.SC >> 4}
    if kind == "null_data":
        out.update(ie_ids=None, vendor_ouis=None, ssid=None)
        out["channel"] = channel_from_freq(freq) if freq else None
        return out
    elements = _elements(dot11)
    if isinstance(elements, str):
        return elements
    ds = elements.pop("ds")
    out.update(elements)
    out["channel"] = channel_from_freq(freq) if freq else ds
    return out


def our_fields(result: Sighting | Rejection | None) -> dict[str, Any] | str | None:
    if result is None:
        return None
    if isinstance(result, Rejection):
        return REJECT
    return {"kind": result.kind, "address": format_mac(result.address), "rssi": result.rssi,
            "freq": result.fields.get("freq"), "seq": result.seq, "channel": result.channel,
            "ie_ids": result.fields.get("ie_ids"), "vendor_ouis": result.fields.get("vendor_ouis"),
            "ssid": result.ssid}
