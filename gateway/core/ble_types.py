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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn


class _Empty(Mapping[Any, Any]):
    """An immutable, hashable empty mapping.

    Why not MappingProxyType({})? It is unhashable before Python 3.12, and 3.11's dataclasses
    refuse unhashable defaults as "mutable".
    """

    __slots__ = ()

    def __getitem__(self, key: object) -> NoReturn:
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


EMPTY: Mapping[Any, Any] = _Empty()

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


# Fast constructors for the hot path. A frozen dataclass's generated __init__ assigns each field
# through object.__setattr__ (~0.2 µs per field on a Pi-class CPU); writing the slots through
# their member descriptors builds the identical object (no __post_init__, no validation exists)
# in a third of the time. Tests assert equality with the regular constructor.
_new = object.__new__


def _slot(cls: type, name: str) -> Callable[[object, Any], None]:
    setter: Callable[[object, Any], None] = vars(cls)[name].__set__  # the slot's descriptor
    return setter


_set_kind = _slot(Decoded, "kind")
_set_fields = _slot(Decoded, "fields")
_set_hints = _slot(Decoded, "identity_hints")
_set_name = _slot(Advert, "local_name")
_set_mfr = _slot(Advert, "manufacturer_data")
_set_svc = _slot(Advert, "service_data")
_set_uuids = _slot(Advert, "service_uuids")
_set_tx = _slot(Advert, "tx_power")


def decoded(kind: str, fields: Mapping[str, Any], identity_hints: tuple[str, ...] = ()) -> Decoded:
    """Same as Decoded(kind, fields, identity_hints), faster."""
    d: Decoded = _new(Decoded)
    _set_kind(d, kind)
    _set_fields(d, fields)
    _set_hints(d, identity_hints)
    return d


def advert(
    local_name: str | None,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    service_uuids: tuple[str, ...],
    tx_power: int | None,
) -> Advert:
    """Same as Advert(...), faster."""
    a: Advert = _new(Advert)
    _set_name(a, local_name)
    _set_mfr(a, manufacturer_data)
    _set_svc(a, service_data)
    _set_uuids(a, service_uuids)
    _set_tx(a, tx_power)
    return a
