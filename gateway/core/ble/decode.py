"""BLE adverts -> sightings: AD-structure parsing, format dispatch, address kinds.

Public API (other modules call only these):
    Advert, Decoded                        plain values (gateway.core.ble_types)
    parse_ad(data, scan_response=b"")      raw AD bytes -> Advert | Rejection
    decode(advert)                         -> tuple[Decoded, ...], never raises, never empty
    address_kind(address, address_type)    -> AddressKind
    to_sightings(ts, address, address_type, rssi, advert, *, channel=None, sensor="")

Invariants:
- Pure: no I/O, no clock, no logging of addresses. Untrusted bytes never raise out of here; a
  broken AD structure is a `Rejection` (reason "ad_overrun": a length runs past the data), a
  broken known payload decodes to the generic kind with a `malformed` reason in its fields.
- `parse_ad` follows bluetooth-data-tools / BlueZ: zero-length structures are padding, type 0 is
  skipped, a complete local name beats a shortened one, later values override earlier ones
  (scan response after advertising data), 16/32/128-bit UUIDs become 128-bit lowercase strings.
- Memo: `parse_ad` and `decode` keep an LRU of the last `MEMO_SIZE` distinct contents (keyed by
  the raw bytes, resp. the manufacturer/service data items). A phone repeating the same advert at
  10 Hz costs one dict lookup after the first sighting. Results are shared between callers and
  therefore read-only (see ble_types). Memory is bounded: MEMO_SIZE entries of < 1 KB each.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from presence_gateway.core.ble import apple as ble_apple
from presence_gateway.core.ble import beacons as ble_beacons
from presence_gateway.core.ble import vendors as ble_vendors
from presence_gateway.core.ble.types import EMPTY, Advert, Decoded, advert, uuid16, uuid32, uuid128
from presence_gateway.core.model import AddressKind, Radio, Rejection, Sighting

__all__ = [
    "EMPTY",
    "Advert",
    "Decoded",
    "address_kind",
    "decode",
    "parse_ad",
    "to_sightings",
]

MEMO_SIZE = 4096

REJECT_OVERRUN = Rejection(Radio.BLE, "ad_overrun")
REJECT_NOT_BYTES = Rejection(Radio.BLE, "ad_not_bytes")
_BUFFERS = (bytes, bytearray, memoryview)

# AD types (Bluetooth Core Supplement, Part A, section 1).
# 0x02/0x03 16-bit, 0x04/0x05 32-bit, 0x06/0x07 128-bit service UUID lists (incomplete/complete).
_UUID128_LAST = 0x07
_SHORT_NAME, _COMPLETE_NAME, _TX_POWER = 0x08, 0x09, 0x0A
_SVC16, _SVC32, _SVC128, _MANUFACTURER = 0x16, 0x20, 0x21, 0xFF


def _uuid_list(uuids: list[str] | None, t: int, body: bytes) -> list[str]:
    """Service UUID list structures (0x02-0x07) -> the advert's list, in order, no repeats."""
    out = [] if uuids is None else uuids
    n = len(body)
    if t <= 0x03:
        new = [uuid16(body[i] | body[i + 1] << 8) for i in range(0, n - 1, 2)]
    elif t <= 0x05:
        new = [uuid32(int.from_bytes(body[i : i + 4], "little")) for i in range(0, n - 3, 4)]
    else:
        new = [uuid128(body[i : i + 16]) for i in range(0, n - 15, 16)]
    for u in new:
        if u not in out:
            out.append(u)
    return out


@lru_cache(maxsize=MEMO_SIZE)
def _parse(data: bytes, scan_response: bytes) -> Advert | Rejection:
    """Walk the AD structures of the advertising data, then of the scan response.

    One flat loop with local variables (no accumulator object, containers created on first
    use): this runs for every advert the memo has not seen, and attribute or call overhead per
    structure was most of its cost. A 1- or 2-byte tail cannot hold a structure with data and
    is ignored (zero padding, or the cut-off tail that bluetooth-data-tools also ignores).
    """
    mfr: dict[int, bytes] | None = None
    svc: dict[str, bytes] | None = None
    uuids: list[str] | None = None
    name: str | None = None
    name_complete = False
    tx: int | None = None
    for buf in (data, scan_response) if scan_response else (data,):
        n = len(buf)
        # Most advertising data starts with the 3-byte Flags structure, which nothing keeps:
        # step over it without a loop turn (a shorter buffer ends the loop either way).
        off = 3 if n > 2 and buf[1] == 0x01 and buf[0] == 0x02 else 0
        while off + 2 < n:
            length = buf[off]
            if not length:  # zero padding
                off += 1
                continue
            end = off + 1 + length
            if end > n:
                return REJECT_OVERRUN
            t = buf[off + 1]
            if t == _MANUFACTURER:  # the common case first
                if length > 2:
                    if mfr is None:
                        mfr = {}
                    mfr[buf[off + 2] | buf[off + 3] << 8] = buf[off + 4 : end]
            elif t <= 1 or length == 1:  # flags, type 0, or an empty body: nothing to keep
                pass
            elif t == _SVC16:
                if length > 2:
                    if svc is None:
                        svc = {}
                    svc[uuid16(buf[off + 2] | buf[off + 3] << 8)] = buf[off + 4 : end]
            elif t == _COMPLETE_NAME or (t == _SHORT_NAME and not name_complete):
                name = buf[off + 2 : end].decode("utf-8", "replace")
                name_complete = t == _COMPLETE_NAME
            elif t == _TX_POWER:
                # Exactly one signed octet (Core Supplement Part A 1.5). A longer body is
                # malformed and skipped, as bluetooth-data-tools does; its first byte is not a
                # trustworthy power.
                if length == 2:
                    tx = buf[off + 2] - 256 if buf[off + 2] > 127 else buf[off + 2]
            elif t <= _UUID128_LAST:
                uuids = _uuid_list(uuids, t, buf[off + 2 : end])
            elif t == _SVC32:
                if length > 4:
                    if svc is None:
                        svc = {}
                    svc[uuid32(int.from_bytes(buf[off + 2 : off + 6], "little"))] = buf[
                        off + 6 : end
                    ]
            elif t == _SVC128 and length > 16:
                if svc is None:
                    svc = {}
                svc[uuid128(buf[off + 2 : off + 18])] = buf[off + 18 : end]
            off = end
    return advert(name, mfr or EMPTY, svc or EMPTY, tuple(uuids) if uuids else (), tx)


def parse_ad(data: bytes, scan_response: bytes = b"") -> Advert | Rejection:
    """Raw AD structures (advertising data, then scan response) -> Advert, or Rejection."""
    if type(data) is not bytes or type(scan_response) is not bytes:
        # bytes(int) would build a zero buffer and bytes(str) raises: accept buffers only.
        if not isinstance(data, _BUFFERS) or not isinstance(scan_response, _BUFFERS):
            return REJECT_NOT_BYTES
        data, scan_response = bytes(data), bytes(scan_response)
    return _parse(data, scan_response)


# --- format dispatch -------------------------------------------------------------------------

_Result = Decoded | str | None
_MFR: dict[int, Callable[[bytes], tuple[Decoded, ...] | _Result]] = {
    0x004C: ble_apple.decode_apple,
    0x0006: ble_vendors.microsoft,
    0x0075: ble_vendors.samsung,
}
_SVC: dict[str, Callable[[bytes], _Result]] = {
    uuid16(0xFEAA): ble_beacons.eddystone,
    uuid16(0xFD6F): ble_vendors.exposure_notification,
    uuid16(0xFE2C): ble_vendors.fast_pair,
}
_ADVERT = (Decoded("advert", EMPTY),)


_GENERIC_ONE: dict[int, tuple[Decoded, ...]] = {}  # company -> (generic Decoded,), see below


def _generic(company: int) -> tuple[Decoded, ...]:
    """The well-formed generic result of a company as a shared 1-tuple: most manufacturer data
    (Microsoft's non-CDP scenarios, every unlisted company) ends here, and the tuple is the
    whole result when the advert has nothing else. Bounded like vendors.generic's own memo."""
    found = _GENERIC_ONE.get(company)
    if found is None:
        found = (ble_vendors.generic(company),)
        if len(_GENERIC_ONE) < 65536:
            _GENERIC_ONE[company] = found
    return found


def _manufacturer(company: int, payload: bytes) -> tuple[Decoded, ...]:
    """One manufacturer data entry -> its Decoded items (never empty)."""
    try:
        # Any company may carry an AltBeacon; the first-byte test spares most payloads a slice.
        if payload and payload[0] == 0xBE and payload[:2] == ble_beacons.ALTBEACON_CODE:
            found: tuple[Decoded, ...] | Decoded | str | None = ble_beacons.altbeacon(payload)
        else:
            special = _MFR.get(company)
            if special is None:
                return _generic(company)
            found = special(payload)
    except (IndexError, ValueError, TypeError):  # defence in depth: decoders check bounds
        found = "decoder_error"
    if type(found) is tuple and found:
        return found
    if type(found) is Decoded:
        return (found,)
    if isinstance(found, str):
        return (ble_vendors.generic(company, found),)
    return _generic(company)


def _service(uuid: str, data: bytes) -> Decoded | None:
    special = _SVC.get(uuid)
    if special is None:
        return None
    try:
        found = special(data)
    except (IndexError, ValueError, TypeError):
        found = "decoder_error"
    if isinstance(found, Decoded):
        return found
    if found is not None:
        return Decoded("advert", {"service_uuid": uuid, "malformed": found})
    return None


@lru_cache(maxsize=MEMO_SIZE)
def _decode_items(
    mfr: tuple[tuple[int, bytes], ...], svc: tuple[tuple[str, bytes], ...]
) -> tuple[Decoded, ...]:
    # The common shapes first, without the list: one manufacturer entry (phones, PCs, most
    # beacons), one service data entry (sensors, Eddystone, EN), or nothing to decode.
    if not svc:
        if len(mfr) == 1:
            company, payload = mfr[0]
            return _manufacturer(company, payload)
        if not mfr:
            return _ADVERT
    elif not mfr and len(svc) == 1:
        uuid, data = svc[0]
        found = _service(uuid, data)
        return _ADVERT if found is None else (found,)
    out: list[Decoded] = []
    for uuid, data in svc:
        found = _service(uuid, data)
        if found is not None:
            out.append(found)
    for company, payload in mfr:
        out.extend(_manufacturer(company, payload))
    return tuple(out) if out else _ADVERT


def decode(advert: Advert) -> tuple[Decoded, ...]:
    """Every sighting found in one advert, service data first; ("advert",) when nothing else."""
    mfr = advert.manufacturer_data
    svc = advert.service_data
    try:
        return _decode_items(tuple(mfr.items()) if mfr else (), tuple(svc.items()) if svc else ())
    except TypeError:  # unhashable/odd values from a foreign caller: decode without the memo
        return _decode_items.__wrapped__(
            tuple((int(k), bytes(v)) for k, v in mfr.items()),
            tuple((str(k), bytes(v)) for k, v in svc.items()),
        )


# --- addresses and sightings -----------------------------------------------------------------

# Index = the two top bits: 00 non-resolvable, 01 resolvable, 10 reserved, 11 static.
_RANDOM_KINDS = (
    AddressKind.RANDOM,
    AddressKind.RESOLVABLE,
    AddressKind.UNKNOWN,
    AddressKind.STATIC,
)


def address_kind(address: bytes, address_type: str) -> AddressKind:
    """Public, or a random address classified by the two top bits of its first display octet."""
    if address_type == "public":
        return AddressKind.PUBLIC
    if address_type != "random" or len(address) != 6:
        return AddressKind.UNKNOWN
    return _RANDOM_KINDS[address[0] >> 6]


def to_sightings(
    ts: float,
    address: bytes,
    address_type: str,
    rssi: int | None,
    advert: Advert,
    *,
    channel: int | None = None,
    sensor: str = "",
) -> list[Sighting]:
    """One Sighting per decoded item; an advert with nothing specific is one "advert" sighting."""
    kind = address_kind(address, address_type)
    return [
        Sighting(
            ts,
            Radio.BLE,
            address,
            kind,
            rssi,
            channel,
            d.kind,
            d.fields,
            identity_hints=d.identity_hints,
            sensor=sensor,
        )
        for d in decode(advert)
    ]


def memo_clear() -> None:
    """Forget memoised parses/decodes (tests, or after changing decoder tables)."""
    _parse.cache_clear()
    _decode_items.cache_clear()

