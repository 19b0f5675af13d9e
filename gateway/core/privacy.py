"""Keyed, rotating pseudonyms, and the boundary where raw addresses stop.

Invariants:
- A device key is HMAC-SHA256(period salt, address) truncated to 64 bits (16 hex chars). The
  period salt is HMAC-SHA256(secret, "presence-gateway/device/<period index>"), so every gateway
  of a store that shares the secret computes the same key for the same device in the same period,
  and keys of two periods are unrelated without the secret.
- The secret lives only in memory (config names where it comes from); salts and keys are derived,
  never stored. A raw address or SSID never leaves `Boundary.admit`.
- Stable hashes (registry, opt-out) use a different domain so they cannot be matched against the
  rotating device keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from presence_gateway.core.model import Observation, Sighting, new_observation

_CACHE_LIMIT = 65536  # addresses remembered per period: bounded memory, cheap repeats
# Decoded fields that identify a beacon (and so a registered customer's app install).
IDENTITY_FIELDS = frozenset({"uuid", "major", "minor", "namespace", "instance", "eid", "id"})


def format_mac(address: bytes) -> str:
    return ":".join(f"{b:02x}" for b in address)


def parse_mac(text: str) -> bytes | None:
    """'aa:bb:cc:dd:ee:ff' / 'aa-bb-..' / 'aabbccddeeff' -> 6 bytes, None when malformed."""
    cleaned = text.strip().replace(":", "").replace("-", "")
    if len(cleaned) != 12:
        return None
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


class Pseudonymizer:
    """Rotating keyed hashes of addresses (device keys) and SSIDs."""

    def __init__(self, secret: bytes, period_s: float = 86400.0, offset_s: float = 0.0) -> None:
        if len(secret) < 16:
            raise ValueError("privacy secret must be at least 16 bytes")
        if period_s <= 0:
            raise ValueError("rotation period must be positive")
        self._secret = secret
        self.period_s = period_s
        self.offset_s = offset_s
        self._period: int | None = None
        self._lo = self._hi = 0.0  # the current period's bounds, to skip the division
        self._device_mac: hmac.HMAC | None = None
        self._ssid_mac: hmac.HMAC | None = None
        self._cache: dict[bytes, str] = {}
        self._ssid_cache: dict[bytes, str] = {}

    def period(self, ts: float) -> int:
        return int((ts - self.offset_s) // self.period_s)

    def _salt(self, period: int, domain: str) -> bytes:
        msg = f"presence-gateway/{domain}/{period}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def _roll(self, ts: float) -> None:
        if self._lo <= ts < self._hi:
            return
        period = self.period(ts)
        self._lo = self.offset_s + period * self.period_s
        self._hi = self._lo + self.period_s
        if period != self._period:
            self._period = period
            self._device_mac = hmac.new(self._salt(period, "device"), digestmod=hashlib.sha256)
            self._ssid_mac = hmac.new(self._salt(period, "ssid"), digestmod=hashlib.sha256)
            self._cache.clear()  # keys of the old period must not outlive it
            self._ssid_cache.clear()

    def device_key(self, address: bytes, ts: float) -> str:
        self._roll(ts)
        key = self._cache.get(address)
        if key is None:
            assert self._device_mac is not None
            h = self._device_mac.copy()
            h.update(address)
            key = h.hexdigest()[:16]
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[address] = key
        return key

    def ssid_hash(self, ssid: bytes, ts: float) -> str:
        self._roll(ts)
        cached = self._ssid_cache.get(ssid)
        if cached is not None:
            return cached
        assert self._ssid_mac is not None
        h = self._ssid_mac.copy()
        h.update(ssid)
        digest = h.hexdigest()[:16]
        if len(self._ssid_cache) >= _CACHE_LIMIT:
            self._ssid_cache.clear()
        self._ssid_cache[ssid] = digest
        return digest

    def stable_hash(self, value: bytes, domain: str) -> str:
        """A non-rotating keyed hash for registry and opt-out lookups (never published)."""
        msg = f"presence-gateway/stable/{domain}/".encode() + value
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]


# A resolver looks at a sighting (raw address, beacon ids) and names the consented registry
# entry it belongs to, or None. The identity index provides it; it must be pure and fast.
Resolver = Callable[[Sighting], "str | None"]


@dataclass(slots=True)
class BoundaryStats:
    admitted: int = 0
    opted_out: int = 0


class Boundary:
    """Sighting (raw) -> Observation (pseudonymous), or None for an opted-out device."""

    def __init__(self, pseudonymizer: Pseudonymizer, *, resolver: Resolver | None = None,
                 opt_out: frozenset[str] = frozenset()) -> None:
        self.pseudonymizer = pseudonymizer
        self.resolver = resolver
        self.opt_out = opt_out
        self.stats = BoundaryStats()

    def replace_opt_out(self, opt_out: frozenset[str]) -> None:
        """A new store-wide opt-out list (keyed address hashes) applies from the next sighting."""
        self.opt_out = opt_out

    def admit(self, s: Sighting) -> Observation | None:
        p = self.pseudonymizer
        if self.opt_out and p.stable_hash(s.address, "address") in self.opt_out:
            self.stats.opted_out += 1
            return None
        fields = s.fields
        if s.ssid is not None:
            fields = {**fields, "ssid_hash": p.ssid_hash(s.ssid, s.ts)}
        identity = self.resolver(s) if self.resolver is not None else None
        if identity is not None:
            # A registered beacon id is identity material: once it named a registry entry,
            # only the entry id goes on (the registry keeps the id as a keyed hash).
            fields = {k: v for k, v in fields.items() if k not in IDENTITY_FIELDS}
        self.stats.admitted += 1
        return new_observation(s.ts, s.radio, p.device_key(s.address, s.ts), s.address_kind,
                               s.rssi, s.channel, s.kind, fields, s.seq, s.fingerprint,
                               identity, s.sensor)
