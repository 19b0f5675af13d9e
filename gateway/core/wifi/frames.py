"""802.11 frames that reveal a station -> `Sighting`; everything else -> None or a `Rejection`.

`parse_record(data, linktype, ts, sensor)` takes one captured record (radio header + 802.11
frame, as a pcap/pcapng record or a monitor socket read gives it) and returns:
- a `Sighting` for a probe request (kind "probe_request"), an association or reassociation
  request ("association_request") or a null / QoS-null data frame sent by a station to its AP
  ("null_data"): frames only a client transmits, so each one means a device is here;
- None for frames that say nothing about a nearby client (beacons, probe responses, control
  frames, ordinary data, frames from APs);
- a `Rejection` with a short reason for malformed input (truncated headers or elements, bad FCS,
  unknown link type, wrong protocol version).

Invariants:
- Pure and total: never raises on any bytes (fuzzed in tests), no I/O, no scapy.
- The raw address and SSID exist only in the returned Sighting (the privacy boundary strips
  them); `fields` never holds an SSID, and the fingerprint is computed without it.
- The element walk (ids, vendor OUIs, fingerprint) depends only on the bytes after the SSID
  element, which a device repeats verbatim probe after probe, so its result is cached by those
  bytes (bounded, in memory): the hot path is one dict lookup, not a loop over elements.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from presence_gateway.core.model import (
    AddressKind,
    Kind,
    Radio,
    Rejection,
    Sighting,
    fast_constructor,
)
from presence_gateway.core.wifi.radiotap import LINKTYPE_RADIOTAP, radio_header, radiotap

_U16 = struct.Struct("<H").unpack_from

KIND_NULL_DATA = Kind.NULL_DATA.value

# The fingerprint: element ids in order (SSID and DS parameter set left out: the SSID is personal
# and per network, the DS set is the current channel and absent on 5 GHz), extension ids, vendor
# OUI + type, and the content of the few elements measured stable across one phone's probes:
# supported / extended rates (basic-rate bit masked) and the HT capability info field. Measured on
# the one-phone probing_patterns captures, these vary within one phone and are left out: the
# extended capabilities (length and bits change with the phone's state), the HT MCS set and HE
# MCS maps (spatial streams drop in low-power states), and any vendor payload.
RATE_IES = frozenset({1, 50})
_IE_HT_CAP = 45
_MASK_BASIC_RATE = bytes(i & 0x7F for i in range(256))
_IE_SSID, _IE_DS, _IE_VENDOR, _IE_EXT = 0, 3, 221, 255

# frame control byte 0 -> kind and the fixed fields between the 24-byte header and the elements
_MGMT_BODY = {0x40: (Kind.PROBE_REQUEST.value, 0), 0x00: (Kind.ASSOCIATION_REQUEST.value, 4),
              0x20: (Kind.ASSOCIATION_REQUEST.value, 10)}
_KIND_TAG = {0: b"p", 4: b"a", 10: b"a"}  # fingerprint domain: probe and (re)assoc elements differ
_NULL_DATA = {0x48: 24, 0xC8: 26}  # null, QoS null: header length

# element walk result: (ie_ids, vendor_ouis, fingerprint, ds_channel) or a rejection reason
_Walked = tuple[tuple[int, ...], tuple[int, ...], str, int | None]
# The fields of a cached element tail, by (directed?) then frequency: a device repeats the same
# request probe after probe, so its Sightings share one `fields` mapping (nothing downstream
# mutates fields; the BLE decoders share theirs the same way), built once, not per frame.
_FieldsMemo = tuple[dict[int | None, dict[str, Any]], dict[int | None, dict[str, Any]]]
_Cached = tuple[_Walked, _FieldsMemo]
_CACHES: dict[int, dict[bytes, _Cached | str]] = {0: {}, 4: {}, 10: {}}  # by fixed-field length
_CACHE_LIMIT = 4096  # distinct element tails (device models x channels); cleared when full

_REJECT: dict[str, Rejection] = {}
_KIND_OF_BIT = (AddressKind.PUBLIC, AddressKind.PUBLIC, AddressKind.RANDOM)  # by octet & 0x02
_WIFI = Radio.WIFI

# (ts, radio, address, address_kind, rssi, channel, kind, fields, seq, ssid, fingerprint,
#  identity_hints, sensor): the Sighting built through its slots, ~1 µs a frame cheaper.
new_sighting: Callable[..., Sighting] = fast_constructor(Sighting)


def reject(reason: str) -> Rejection:
    """Shared Rejection per reason: refusing a frame allocates nothing."""
    rej = _REJECT.get(reason)
    if rej is None:
        rej = _REJECT[reason] = Rejection(Radio.WIFI, reason)
    return rej


def address_kind(address: bytes) -> AddressKind:
    """Locally administered bit (0x02 of the first octet) set -> RANDOM, else PUBLIC."""
    return AddressKind.RANDOM if address[0] & 0x02 else AddressKind.PUBLIC


def walk_elements(data: bytes, pos: int, end: int, tag: bytes = b"p") -> _Walked | str:
    """Walk the tagged elements in data[pos:end]: (ids in order, vendor OUIs, fingerprint,
    DS channel). `tag` separates fingerprint domains (probe vs association elements)."""
    ids: list[int] = []
    ouis: list[int] = []
    material = bytearray(tag)
    ds: int | None = None
    while pos < end:
        if pos + 2 > end:
            return "truncated_ie"
        eid, elen = data[pos], data[pos + 1]
        body = pos + 2
        pos = body + elen
        if pos > end:
            return "truncated_ie"
        ids.append(eid)
        if eid == _IE_SSID:
            continue
        if eid == _IE_DS:
            ds = data[body] if elen else None
            continue
        material.append(eid)
        if eid in RATE_IES:
            material.append(elen)
            material += data[body:pos].translate(_MASK_BASIC_RATE)
        elif eid == _IE_HT_CAP:
            material += data[body:body + 2]
        elif eid == _IE_VENDOR:
            vendor = data[body:body + 4]  # OUI + vendor type, never the vendor payload
            ouis.append(int.from_bytes(vendor[:3], "big"))
            material += vendor
        elif eid == _IE_EXT and elen:
            material.append(data[body])
    fingerprint = hashlib.blake2b(material, digest_size=8).hexdigest()
    return (tuple(ids), tuple(ouis), fingerprint, ds)


def _elements(data: bytes, pos: int, end: int, fixed: int
              ) -> tuple[bytes | None, _Walked, _FieldsMemo | None] | str:
    """(ssid, walked, fields memo) for the elements at data[pos:end]; cached by the bytes after
    the SSID (the memo is None when uncached)."""
    ssid: bytes | None = None
    if pos + 2 <= end and data[pos] == _IE_SSID:
        tail = pos + 2 + data[pos + 1]
        if tail > end:
            return "truncated_ie"
        if tail > pos + 2:
            ssid = data[pos + 2:tail]
        cache = _CACHES[fixed]
        key = data[tail:end]
        cached = cache.get(key)
        if cached is None:
            walked = walk_elements(data, pos, end, _KIND_TAG[fixed])
            cached = walked if isinstance(walked, str) else (walked, ({}, {}))
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = cached
        if isinstance(cached, str):
            return cached
        return (ssid, cached[0], cached[1])
    # no leading SSID element (association requests may order differently): uncached
    found = walk_elements(data, pos, end, _KIND_TAG[fixed])
    if isinstance(found, str):
        return found
    return (_find_ssid(data, pos, end), found, None)


def _find_ssid(data: bytes, pos: int, end: int) -> bytes | None:
    while pos + 2 <= end:
        elen = data[pos + 1]
        if data[pos] == _IE_SSID:
            return data[pos + 2:pos + 2 + elen] or None
        pos += 2 + elen
    return None


def _null_data(
    data: bytes, start: int, end: int, hdr: int, fc1: int
) -> tuple[bytes, int, str] | Rejection | None:
    if fc1 & 0x03 != 0x01:  # only station -> AP (ToDS set, FromDS clear) reveals a client
        return None
    if fc1 & 0x80:
        hdr += 4  # +HTC
    if end - start < hdr:
        return reject("truncated_80211")
    return (data[start + 10:start + 16], _U16(data, start + 22)[0] >> 4, KIND_NULL_DATA)


def parse_record(
    data: bytes, linktype: int, ts: float, sensor: str = ""
) -> Sighting | Rejection | None:
    """One captured record -> Sighting (a client frame), None (irrelevant) or Rejection."""
    if linktype & 0xFFFF == LINKTYPE_RADIOTAP:  # the live and common case: one call less
        radio = radiotap(data)
    else:
        radio = radio_header(data, linktype)
    if isinstance(radio, str):
        return reject(radio)
    start, end, rssi, freq, channel = radio
    if end - start < 2:
        return reject("truncated_80211")
    fc0, fc1 = data[start], data[start + 1]
    if fc0 & 0x03:
        return reject("bad_80211_version")
    mgmt = _MGMT_BODY.get(fc0)
    if mgmt is None:
        hdr = _NULL_DATA.get(fc0)
        if hdr is None:
            return None
        null = _null_data(data, start, end, hdr, fc1)
        if null is None or isinstance(null, Rejection):
            return null
        address, seq, kind = null
        return new_sighting(ts, _WIFI, address, _KIND_OF_BIT[address[0] & 2], rssi, channel,
                            kind, {"freq": freq}, seq, None, None, (), sensor)
    kind, fixed = mgmt
    body = start + (28 if fc1 & 0x80 else 24)  # +HTC when the Order bit is set
    if end - body < fixed:
        return reject("truncated_80211")
    result = _elements(data, body + fixed, end, fixed)
    if isinstance(result, str):
        return reject(result)
    ssid, (ie_ids, ouis, fingerprint, ds), memo = result
    address = data[start + 10:start + 16]
    by_freq = None if memo is None else memo[ssid is not None]
    fields = None if by_freq is None else by_freq.get(freq)
    if fields is None:
        fields = {"ssid_directed": ssid is not None, "ie_ids": ie_ids, "vendor_ouis": ouis,
                  "freq": freq, "ds_channel": ds}
        if fixed == 10:
            fields["reassociation"] = True
        if by_freq is not None:
            by_freq[freq] = fields
    if channel is None:
        channel = ds  # no radio channel (plain 802.11): the DS parameter set says where it sent
    return new_sighting(ts, _WIFI, address, _KIND_OF_BIT[address[0] & 2], rssi, channel, kind,
                        fields, _U16(data, start + 22)[0] >> 4, ssid, fingerprint, (), sensor)
