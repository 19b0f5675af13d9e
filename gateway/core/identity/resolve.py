"""Private-identity crypto: BLE resolvable private addresses, Eddystone-EID, rotating app tokens.

Everything here is pure (AES-128 and HMAC from `cryptography` / hashlib, no I/O, no clock: the
caller passes `now`). Secrets are held in memory only and never appear in reprs or errors.

Byte orders (the usual source of "it never matches"):
- `ah(k, r)` takes the IRK and `prand` most-significant octet first, exactly as the Core spec
  writes them (Vol 3 Part H 2.2.1: the MSB of the key is AES `key[0]`). The spec's sample data
  (Appendix D.7) is IRK 0xec0234a357c8ad05341010a60a397d9b, prand 0x708194 -> hash 0x0dfbaa.
- A 6-byte address is in display order (first printed octet first): prand = bytes 0..2 (its two
  top bits are 0b01 for a resolvable private address), hash = bytes 3..5. On air the address is
  little-endian; drivers reverse it before it gets here.
- IRKs as people paste them come in both orders: hex as the spec prints it (MSB first, also what
  BlueZ's `/var/lib/bluetooth/.../info` shows) and LSB first as SMP carries it (iOS Keychain's
  base64 "Remote IRK" as Home Assistant takes it, Android's `bt_config.conf` LE_KEY_PID hex).
  `parse_irk` normalises to MSB first; base64 is taken as LSB first (Home Assistant's
  convention), hex as MSB first unless `order="lsb"` is given.

Invariants:
- `IrkResolver.resolve` returns the id of the key whose ah(k, prand) equals the address hash, or
  None; results (hits and misses) are cached per address in a bounded LRU. Adding a key drops
  the cached misses (one may now match); removing a key drops the hits that named it.
- `AppTokenResolver` only ever matches tokens of the windows w-1, w, w+1 around the `now` it is
  given; a token shared by two installs in those windows is ambiguous and resolves to None.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

IrkOrder = Literal["auto", "msb", "lsb"]
_PAD13 = bytes(13)
_EID_TK_SALT = bytes(11) + b"\xff" + bytes(2)
APP_TOKEN_DOMAIN = b"presence-gateway/app-token/v1"
APP_TOKEN_WINDOW_S = 300


def _encryptor(key: bytes) -> Callable[[bytes], bytes]:
    """A reusable AES-128-ECB block function (ECB keeps no state between blocks)."""
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update


def ah(k: bytes, r: bytes) -> bytes:
    """Core spec random address hash: e(k, 0^104 || r) mod 2^24, as 3 bytes MSB first."""
    if len(k) != 16 or len(r) != 3:
        raise ValueError("ah needs a 16-byte key and a 3-byte prand")
    return _encryptor(k)(_PAD13 + r)[13:]


def is_resolvable(address: bytes) -> bool:
    """A random address whose two top bits are 0b01 (caller knows it is a random address)."""
    return len(address) == 6 and address[0] & 0xC0 == 0x40


def parse_irk(text: str, order: IrkOrder = "auto") -> bytes | None:
    """User-pasted IRK -> 16 bytes MSB first (the order `ah` wants), None when malformed.

    Accepts hex with or without `:`/`-`/spaces/`0x`, an optional `irk:` prefix, base64 (iOS /
    Home Assistant, LSB first) and Android's 23-byte LE_KEY_PID hex (IRK LSB first + type +
    address). `order` forces how hex is read; "auto" reads 32-hex-digit keys MSB first.
    """
    s = text.strip().removeprefix("irk:").removeprefix("0x").removeprefix("0X")
    cleaned = s.replace(":", "").replace("-", "").replace(" ", "")
    raw: bytes | None
    lsb = order == "lsb"
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = None
    if raw is None or len(cleaned) not in (32, 46):
        try:
            raw = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError):
            return None
        lsb = order != "msb"
    elif len(raw) == 23:  # Android LE_KEY_PID: irk[16] (LSB first), addr type, address
        raw, lsb = raw[:16], order != "msb"
    if len(raw) != 16:
        return None
    return raw[::-1] if lsb else raw


class IrkResolver:
    """Which registered IRK (if any) produced a resolvable private address.

    A new address costs one AES block per key (the RPA design leaves no shortcut); repeats are
    answered from the LRU cache. Key ids are opaque strings (registry entry ids).
    """

    def __init__(self, keys: Mapping[str, bytes] | None = None, cache_size: int = 65536) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be positive")
        self._keys: dict[str, Callable[[bytes], bytes]] = {}
        self._scan: list[tuple[str, Callable[[bytes], bytes]]] = []
        self._cache: OrderedDict[bytes, str | None] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0
        if keys:
            self.update(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never show key material
        return f"IrkResolver(keys={len(self._keys)}, cached={len(self._cache)})"

    def add(self, key_id: str, irk: bytes) -> None:
        self.update({key_id: irk})

    def update(self, keys: Mapping[str, bytes]) -> None:
        """Add or replace keys (MSB first). Cached misses and replaced ids' hits are dropped."""
        for key_id, irk in keys.items():
            if len(irk) != 16:
                raise ValueError(f"IRK for {key_id!r} must be 16 bytes")
            self._keys[key_id] = _encryptor(irk)
        self._rebuild()
        changed = set(keys)
        self._drop(lambda v: v is None or v in changed)

    def remove(self, key_ids: Iterable[str]) -> None:
        gone = {k for k in key_ids if self._keys.pop(k, None) is not None}
        if gone:
            self._rebuild()
            self._drop(lambda v: v in gone)

    def _rebuild(self) -> None:
        self._scan = list(self._keys.items())

    def _drop(self, pred: Callable[[str | None], bool]) -> None:
        for addr in [a for a, v in self._cache.items() if pred(v)]:
            del self._cache[addr]

    def resolve(self, address: bytes) -> str | None:
        """Key id for a 6-byte display-order RPA, else None (non-RPAs are not cached)."""
        if not is_resolvable(address):
            return None
        cache = self._cache
        if address in cache:
            self.hits += 1
            cache.move_to_end(address)
            return cache[address]
        self.misses += 1
        block = _PAD13 + address[:3]
        want = address[3:]
        found: str | None = None
        for key_id, enc in self._scan:
            if enc(block)[13:] == want:
                found = key_id
                break
        cache[address] = found
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return found


# --- Eddystone-EID -------------------------------------------------------------------------


def eid_temporary_key(identity_key: bytes, time_s: int) -> bytes:
    """AES(identity key, 0^11 || 0xFF || 0^2 || top 16 bits of the 32-bit time counter)."""
    t = time_s & 0xFFFFFFFF
    return _encryptor(identity_key)(_EID_TK_SALT + (t >> 16).to_bytes(2, "big"))


def eid_from_temporary_key(temporary_key: bytes, rotation_exponent: int, time_s: int) -> bytes:
    """First 8 bytes of AES(tk, 0^11 || K || time counter with its K low bits cleared)."""
    if not 0 <= rotation_exponent <= 15:
        raise ValueError("rotation exponent must be 0..15")
    t = (time_s & 0xFFFFFFFF) & ~((1 << rotation_exponent) - 1)
    block = bytes(11) + bytes((rotation_exponent,)) + t.to_bytes(4, "big")
    return _encryptor(temporary_key)(block)[:8]


def eid(identity_key: bytes, rotation_exponent: int, time_s: int) -> bytes:
    """The 8-byte ephemeral id a beacon broadcasts at beacon time `time_s` (Eddystone-EID)."""
    if len(identity_key) != 16:
        raise ValueError("EID identity key must be 16 bytes")
    tk = eid_temporary_key(identity_key, time_s)
    return eid_from_temporary_key(tk, rotation_exponent, time_s)


# --- rotating app token (docs/app_token.md is the normative text) ----------------


def app_token_window(unix_time: float, window_s: int = APP_TOKEN_WINDOW_S) -> int:
    """floor(unix_time / window_s): the window index both sides agree on."""
    return int(unix_time // window_s)


def app_token(secret: bytes, window: int) -> tuple[int, int]:
    """(major, minor) = the first 4 bytes of HMAC-SHA256(secret, domain || window u64 BE)."""
    d = hmac.new(secret, APP_TOKEN_DOMAIN + window.to_bytes(8, "big"), hashlib.sha256).digest()
    return (d[0] << 8) | d[1], (d[2] << 8) | d[3]


def normalize_uuid(uuid: str) -> str:
    """Lowercase, dashed 8-4-4-4-12 form (accepts any case, with or without dashes)."""
    h = uuid.strip().lower().replace("-", "").removeprefix("urn:uuid:")
    if len(h) != 32:
        raise ValueError("iBeacon UUID must have 32 hex digits")
    int(h, 16)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_AMBIGUOUS = ""  # install ids are non-empty; "" marks a token two installs share


class AppTokenResolver:
    """(iBeacon uuid, major, minor) -> install id for tokens of windows w-1, w, w+1.

    Tokens are precomputed: 3 HMACs per install per window change (only the new edge window is
    computed when time moves on by one window), then a lookup is one dict access.
    """

    def __init__(self, window_s: int = APP_TOKEN_WINDOW_S, tolerance: int = 1) -> None:
        if window_s <= 0 or tolerance < 0:
            raise ValueError("window_s must be positive and tolerance non-negative")
        self.window_s = window_s
        self.tolerance = tolerance
        self._installs: dict[str, tuple[str, bytes]] = {}
        self._window: int | None = None
        self._by_window: dict[int, dict[tuple[str, int, int], str]] = {}

    def __repr__(self) -> str:
        return f"AppTokenResolver(installs={len(self._installs)}, window_s={self.window_s})"

    def register(self, install_id: str, secret: bytes, uuid: str) -> None:
        if not install_id:
            raise ValueError("install id must not be empty")
        if len(secret) < 16:
            raise ValueError("app token secret must be at least 16 bytes")
        self._installs[install_id] = (normalize_uuid(uuid), secret)
        self._by_window.clear()
        self._window = None

    def unregister(self, install_id: str) -> None:
        if self._installs.pop(install_id, None) is not None:
            self._by_window.clear()
            self._window = None

    def _tokens(self, window: int) -> dict[tuple[str, int, int], str]:
        table: dict[tuple[str, int, int], str] = {}
        for install_id, (uuid, secret) in self._installs.items():
            key = (uuid, *app_token(secret, window))
            table[key] = _AMBIGUOUS if key in table else install_id
        return table

    def _roll(self, now: float) -> None:
        w = app_token_window(now, self.window_s)
        if w == self._window:
            return
        wanted = range(w - self.tolerance, w + self.tolerance + 1)
        self._by_window = {i: self._by_window.get(i) or self._tokens(i) for i in wanted}
        self._window = w

    def resolve(self, uuid: str, major: int, minor: int, now: float) -> str | None:
        """Install id whose token for a window within tolerance of `now` matches, else None."""
        self._roll(now)
        key = (uuid.lower(), major, minor)
        found: str | None = None
        for table in self._by_window.values():
            hit = table.get(key)
            if hit is not None:
                if hit == _AMBIGUOUS or (found is not None and found != hit):
                    return None
                found = hit
        return found
