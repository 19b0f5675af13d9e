"""Plain values shared by the BLE decoders: the advert as bleak presents it, and what we decode.

Invariants:
- `Advert` mirrors bleak's `AdvertisementData` field conventions with plain values: company id ->
  payload WITHOUT the company id; service data and service UUIDs keyed by 128-bit lowercase UUID
  strings. Decoders read it, never write it.
- `Decoded.fields` and `Advert`'s mappings are plain dicts for speed and JSON-friendliness, but
  they are READ-ONLY by contract: the decode memo (ble.py) hands the same objects to every caller
  that sees the same content. Copy before changing.
- Nothing personal goes into `fields`: no addresses, no local names, no rotating hashes that are
  only useful to track a person (beacon ids and product model ids are fine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from presence_gateway.core.model import EMPTY as EMPTY
from presence_gateway.core.model import fast_constructor

# EMPTY (re-exported): the model's immutable, hashable empty mapping.

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

_UUID16: dict[int, str] = {}


def uuid16(value: int) -> str:
    """16-bit SIG UUID -> 128-bit lowercase string (memoised: at most 65,536 entries)."""
    text = _UUID16.get(value)
    if text is None:
        text = _UUID16[value] = f"0000{value:04x}{BASE_UUID_SUFFIX}"
    return text


def uuid32(value: int) -> str:
    return f"{value:08x}{BASE_UUID_SUFFIX}"


def uuid128(raw_le: bytes) -> str:
    """16 bytes little-endian (as on air) -> canonical lowercase UUID string."""
    h = raw_le[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def uuid_be(raw_be: bytes) -> str:
    """16 bytes big-endian (iBeacon / AltBeacon proximity UUIDs) -> canonical string."""
    h = raw_be.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement (advertising data merged with its scan response), plain values."""

    local_name: str | None = None
    manufacturer_data: Mapping[int, bytes] = EMPTY
    service_data: Mapping[str, bytes] = EMPTY
    service_uuids: tuple[str, ...] = ()
    tx_power: int | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """One thing found in an advert: a beacon frame, a phone's message set, a vendor payload.

    `kind` is one of the names of the `decode ble` contract; `fields` holds exactly its field
    names; `identity_hints` are registry keys ("ibeacon:<uuid>/<major>/<minor>", ...).
    """

    kind: str
    fields: Mapping[str, Any]
    identity_hints: tuple[str, ...] = ()


# Constructors for the hot path: the same frozen objects at about a third of the cost of the
# generated __init__ (tests assert equality with it): model.fast_constructor fills a plain
# class with the same slots and assigns __class__ (every uncached advert builds one Advert
# and usually one Decoded).
# advert(local_name, manufacturer_data, service_data, service_uuids, tx_power)
advert: Callable[..., Advert] = fast_constructor(Advert)
# decoded(kind, fields, identity_hints=())
decoded: Callable[..., Decoded] = fast_constructor(Decoded)
