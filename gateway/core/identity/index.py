"""Identity registry entries and the resolver the privacy boundary calls.

An *entry* says "this identity material belongs to customer C, who consented to scopes S".
The registry shell (gateway/registry.py) stores entries; this module holds them in memory as an
`IdentityIndex` whose `resolve(sighting)` is the boundary's `Resolver`: raw sighting -> entry id.

Invariants:
- An Entry never holds a raw beacon id or Wi-Fi address: those are kept as keyed stable hashes
  (`Pseudonymizer.stable_hash`, one domain per kind). Only material that must be used as a key
  (IRK, Eddystone-EID identity key, app-token install secret) is held as such, and no `repr`
  shows it.
- `resolve` never raises on what a sighting carries, costs one dict lookup for the common case
  (nothing registered matches), and answers only with entries that are live at the sighting's
  time (not expired) and carry at least one consent scope.
- Rotating material (app tokens, EIDs) is matched only within its window tolerance around the
  sighting's own timestamp, so replay in capture time gives the same answers as live.
- Value parsing (`parse_material`) returns a material string or an `Invalid` with a reason;
  it never raises on untrusted text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from presence_gateway.core.identity.eid_table import EidTable
from presence_gateway.core.identity.resolve import (
    APP_TOKEN_WINDOW_S,
    AppTokenResolver,
    IrkResolver,
    normalize_uuid,
    parse_irk,
)
from presence_gateway.core.model import AddressKind, Radio, Sighting
from presence_gateway.core.privacy import parse_mac

Hasher = Callable[[bytes, str], str]  # Pseudonymizer.stable_hash


class Scope(StrEnum):
    ANALYTICS = "analytics"
    PERSONALIZATION = "personalization"
    OFFERS = "offers"


SCOPES = frozenset(s.value for s in Scope)


class EntryKind(StrEnum):
    IBEACON = "ibeacon"
    EDDYSTONE_UID = "eddystone_uid"
    EDDYSTONE_EID = "eddystone_eid"
    IRK = "irk"
    WIFI_MAC = "wifi_mac"
    APP_TOKEN = "app_token"


KINDS = frozenset(k.value for k in EntryKind)
SECRET_KINDS = frozenset({EntryKind.IRK, EntryKind.EDDYSTONE_EID, EntryKind.APP_TOKEN})
_PRIVATE_MAC = "la:"  # material prefix of a registered locally administered Wi-Fi address


@dataclass(frozen=True, slots=True)
class Entry:
    """One registry entry. `material` is a keyed hash (beacon ids, MACs) or a secret (hex)."""

    entry_id: str
    customer_id: str
    kind: EntryKind
    material: str = field(repr=False)
    consent: frozenset[str] = frozenset()
    segments: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    expires: float | None = None

    def live(self, now: float) -> bool:
        return bool(self.consent) and (self.expires is None or now < self.expires)

    def allows(self, scope: str) -> bool:
        return scope in self.consent


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a value, row or message was refused (a short sentence for a person)."""

    reason: str


# -- material: value text -> what is stored ------------------------------------------------


def _u16(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 5 and int(text) <= 0xFFFF else None


def _hex(text: str, n: int) -> str | None:
    t = text.strip().lower()
    if len(t) != 2 * n:
        return None
    try:
        bytes.fromhex(t)
    except ValueError:
        return None
    return t


def ibeacon_key(value: str) -> str | Invalid:
    """'uuid/major/minor' -> the canonical form the BLE decoder writes in its hints."""
    parts = value.strip().split("/")
    if len(parts) != 3:
        return Invalid("expected uuid/major/minor")
    try:
        uuid = normalize_uuid(parts[0])
    except ValueError:
        return Invalid("the iBeacon UUID must have 32 hex digits")
    major, minor = _u16(parts[1].strip()), _u16(parts[2].strip())
    if major is None or minor is None:
        return Invalid("major and minor must be integers 0..65535")
    return f"{uuid}/{major}/{minor}"


def eddystone_uid_key(value: str) -> str | Invalid:
    parts = value.strip().split("/")
    ns = _hex(parts[0], 10) if len(parts) == 2 else None
    inst = _hex(parts[1], 6) if len(parts) == 2 else None
    if ns is None or inst is None:
        return Invalid("expected namespace/instance: 20 and 12 hex digits")
    return f"{ns}/{inst}"


def _eid_material(value: str) -> str | Invalid:
    parts = value.strip().split("/")
    if len(parts) not in (2, 3):
        return Invalid("expected identity_key_hex/rotation_exponent[/clock_offset_s]")
    key = _hex(parts[0], 16)
    k = parts[1].strip()
    if key is None:
        return Invalid("the EID identity key must be 32 hex digits")
    if not (k.isdigit() and int(k) <= 15):
        return Invalid("the rotation exponent must be an integer 0..15")
    offset = parts[2].strip() if len(parts) == 3 else "0"
    if not (offset.lstrip("-").isdigit() and len(offset) <= 12):
        return Invalid("the clock offset must be an integer number of seconds")
    return f"{key}/{int(k)}/{int(offset)}"


def _app_material(value: str) -> str | Invalid:
    uuid, _, secret_text = value.strip().rpartition("/")
    secret = _hex(secret_text, len(secret_text.strip()) // 2) if secret_text else None
    if secret is None or len(secret) < 32 or len(secret) % 2:
        return Invalid("the app token secret must be at least 16 bytes of hex")
    if not uuid:
        return secret
    try:
        return f"{normalize_uuid(uuid)}/{secret}"
    except ValueError:
        return Invalid("the app UUID must have 32 hex digits")


def _wifi_material(value: str, hasher: Hasher) -> str | Invalid:
    mac = parse_mac(value)
    if mac is None:
        return Invalid("expected a MAC address such as 3c:22:fb:12:34:56")
    if mac[0] & 0x01:
        return Invalid("a group (multicast) address is never a device")
    h = hasher(mac, EntryKind.WIFI_MAC.value)
    return _PRIVATE_MAC + h if mac[0] & 0x02 else h


def parse_material(kind: str, value: str, hasher: Hasher) -> str | Invalid:
    """Validate `value` for `kind` and return what is stored (hash or normalised secret)."""
    if kind == EntryKind.IBEACON or kind == EntryKind.EDDYSTONE_UID:
        key = ibeacon_key(value) if kind == EntryKind.IBEACON else eddystone_uid_key(value)
        return key if isinstance(key, Invalid) else hasher(key.encode(), kind)
    if kind == EntryKind.IRK:
        irk = parse_irk(value)
        return Invalid("expected a 16-byte IRK (hex or base64)") if irk is None else irk.hex()
    if kind == EntryKind.EDDYSTONE_EID:
        return _eid_material(value)
    if kind == EntryKind.APP_TOKEN:
        return _app_material(value)
    if kind == EntryKind.WIFI_MAC:
        return _wifi_material(value, hasher)
    return Invalid(f"unknown kind (expected one of: {', '.join(sorted(KINDS))})")


def entry_id_for(kind: str, material: str, hasher: Hasher) -> str:
    """A deterministic id, so re-importing the same material updates instead of duplicating."""
    return "e" + hasher(f"{kind}\0{material}".encode(), "entry")[:15]


# -- the index ---------------------------------------------------------------------------------

_STABLE_WIFI = (AddressKind.PUBLIC, AddressKind.STATIC)
_CACHE_LIMIT = 65536


@dataclass(slots=True)
class ResolveStats:
    by_method: dict[str, int] = field(default_factory=dict)
    expired: int = 0


class IdentityIndex:
    """In-memory registry: the boundary's Resolver plus entry lookups for the linker.

    `hasher` must be the boundary pseudonymizer's `stable_hash` (the same secret that hashed the
    stored material). `app_uuid` is the retailer app's iBeacon UUID for app-token entries that do
    not name their own.
    """

    def __init__(self, hasher: Hasher, entries: Iterable[Entry] = (), *,
                 app_uuid: str | None = None, app_window_s: int = APP_TOKEN_WINDOW_S,
                 app_tolerance: int = 1, eid_tolerance: int = 1) -> None:
        self._hasher = hasher
        self._app_uuid = normalize_uuid(app_uuid) if app_uuid else None
        self._app_window_s, self._app_tolerance = app_window_s, app_tolerance
        self._eid = EidTable(eid_tolerance)
        self.stats = ResolveStats()
        self.unusable: list[str] = []  # entry ids that can never match (e.g. no app UUID)
        self.replace(entries)

    def __repr__(self) -> str:
        return f"IdentityIndex(entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    def __call__(self, s: Sighting) -> str | None:
        return self.resolve(s)

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def of_customer(self, customer_id: str) -> list[Entry]:
        return [e for i in self._customers.get(customer_id, ()) if (e := self._entries.get(i))]

    def replace(self, entries: Iterable[Entry]) -> None:
        """Swap the whole registry (start, snapshot, reload). Caches are rebuilt from scratch."""
        self._entries = {e.entry_id: e for e in entries}
        self._customers: dict[str, list[str]] = {}
        for e in self._entries.values():
            self._customers.setdefault(e.customer_id, []).append(e.entry_id)
        self._by_hash: dict[str, str] = {}
        self._irk = IrkResolver()
        self._app = AppTokenResolver(self._app_window_s, self._app_tolerance)
        self._hint_cache: dict[str, tuple[str | None, str]] = {}
        self._cache_window: int | None = None
        self._addr_cache: dict[bytes, str | None] = {}
        self.unusable = []
        irks: dict[str, bytes] = {}
        eids: dict[str, tuple[bytes, int, int]] = {}
        self._wifi_private = False
        self._apps = 0
        for e in self._entries.values():
            self._add(e, irks, eids)
        self._irk.update(irks)
        self._eid.set(eids)
        self._wifi = sum(1 for e in self._entries.values() if e.kind is EntryKind.WIFI_MAC)

    def _add(self, e: Entry, irks: dict[str, bytes],
             eids: dict[str, tuple[bytes, int, int]]) -> None:
        m = e.material
        if e.kind is EntryKind.IRK:
            irks[e.entry_id] = bytes.fromhex(m)
        elif e.kind is EntryKind.EDDYSTONE_EID:
            key, k, offset = m.split("/")
            eids[e.entry_id] = (bytes.fromhex(key), int(k), int(offset))
        elif e.kind is EntryKind.APP_TOKEN:
            uuid, _, secret = m.rpartition("/")
            uuid = uuid or (self._app_uuid or "")
            if not uuid:
                self.unusable.append(e.entry_id)
                return
            self._app.register(e.entry_id, bytes.fromhex(secret), uuid)
            self._apps += 1
        else:
            if m.startswith(_PRIVATE_MAC):
                self._wifi_private = True
                m = m[len(_PRIVATE_MAC):]
            self._by_hash[m] = e.entry_id

    # -- the Resolver ------------------------------------------------------------------------
    def resolve(self, s: Sighting) -> str | None:
        """Raw sighting -> id of a live, consented entry, or None. Never raises."""
        found: str | None = None
        method = ""
        for hint in s.identity_hints:
            found, method = self._hint(hint, s.ts)
            if found is not None:
                break
        if found is None:
            kind = s.address_kind
            if kind is AddressKind.RESOLVABLE and s.radio is Radio.BLE:
                if len(self._irk):
                    found, method = self._irk.resolve(s.address), "irk"
            elif s.radio is Radio.WIFI and self._wifi and (
                    kind in _STABLE_WIFI or (self._wifi_private and kind is AddressKind.RANDOM)):
                found, method = self._wifi_mac(s.address), "wifi_mac"
        if found is None:
            return None
        entry = self._entries.get(found)
        if entry is None or not entry.live(s.ts):
            self.stats.expired += 1
            return None
        by = self.stats.by_method
        by[method] = by.get(method, 0) + 1
        return found

    def _hint(self, hint: str, ts: float) -> tuple[str | None, str]:
        """Beacon hint -> (entry id, method). Answers are cached per hint; with app tokens
        registered the cache lives for one token window (the answer depends on the window)."""
        cache = self._hint_cache
        if self._apps:
            w = int(ts // self._app_window_s)
            if w != self._cache_window:
                cache.clear()
                self._cache_window = w
        hit = cache.get(hint)
        if hit is not None:
            return hit
        prefix, _, rest = hint.partition(":")
        if prefix == "eddystone_eid":  # its own per-period table; nothing to cache
            return self._eid.resolve(rest.lower(), ts), "eddystone_eid"
        found: str | None = None
        method = prefix
        if prefix == "ibeacon" and self._apps:
            found = self._app_token(rest, ts)
            method = "app_token" if found is not None else prefix
        if found is None and prefix in ("ibeacon", "eddystone_uid") and self._by_hash:
            found = self._by_hash.get(self._hasher(rest.encode(), prefix))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[hint] = (found, method)
        return found, method

    def _app_token(self, rest: str, ts: float) -> str | None:
        parts = rest.split("/")
        if len(parts) != 3:
            return None
        major, minor = _u16(parts[1]), _u16(parts[2])
        if major is None or minor is None:
            return None
        return self._app.resolve(parts[0], major, minor, ts)

    def _wifi_mac(self, address: bytes) -> str | None:
        cache = self._addr_cache
        if address in cache:
            return cache[address]
        found = self._by_hash.get(self._hasher(address, EntryKind.WIFI_MAC.value))
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[address] = found
        return found
