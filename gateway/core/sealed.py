"""Sealed inbound messages: authenticated (and confidential) before a byte is parsed.

Identity sync and gateway commands arrive from the broker, where anyone with publish rights
on a topic can send anything. They are sealed with AES-256-GCM (the `cryptography` library):

    payload = b"PGS1" || nonce (12 random bytes) || AES-GCM(key', nonce, body, aad)

- `key'` is derived per purpose with HKDF-SHA256 from the configured secret (identity.sync_key,
  offers.command_key), so the same secret never keys two different uses.
- `aad` binds the message to where it may be used (`identity.snapshot/<store>`,
  `offers.reload/<store>/<gateway>`): a sealed snapshot cannot be replayed as an update, nor
  to another store or gateway.
- The body is the JSON text the sender wrote; it is parsed only after the tag verified.

Invariants: pure; never raises on untrusted bytes; the size cap is checked before anything
else; a subscriber without the key learns only the message's size (the tag hides nothing
more; no field is in clear); a rejection never quotes the payload.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"PGS1"
NONCE = 12
TAG = 16


def derive(secret: bytes, purpose: str) -> bytes:
    """The AES-256 key for `purpose` (HKDF-SHA256, no salt: the secret is already random)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"presence-gateway/" + purpose.encode()).derive(secret)


def seal(secret: bytes, purpose: str, aad: str, body: bytes, *,
         nonce: bytes | None = None) -> bytes:
    """What a sender publishes (central systems, tools, tests)."""
    n = os.urandom(NONCE) if nonce is None else nonce
    return MAGIC + n + AESGCM(derive(secret, purpose)).encrypt(n, body, aad.encode())


class Opened:
    """An opener for one purpose: the derived key is computed once."""

    def __init__(self, secret: bytes, purpose: str, *, max_size: int) -> None:
        self._aead = AESGCM(derive(secret, purpose)) if secret else None
        self.max_size = max_size

    def __repr__(self) -> str:  # never show the key
        return f"Opened(configured={self._aead is not None})"

    def open(self, payload: bytes, aad: str) -> bytes | tuple[str, str]:
        """The authenticated body, or (reason, detail): too_large, no_key, malformed,
        unauthenticated."""
        if len(payload) > self.max_size:
            return "too_large", f"{len(payload)} bytes > {self.max_size}"
        if self._aead is None:
            return "no_key", "no key is configured"
        if len(payload) < len(MAGIC) + NONCE + TAG or not payload.startswith(MAGIC):
            return "malformed", "not a sealed message (PGS1 || nonce || AES-GCM)"
        nonce = payload[len(MAGIC):len(MAGIC) + NONCE]
        try:
            return self._aead.decrypt(nonce, payload[len(MAGIC) + NONCE:], aad.encode())
        except InvalidTag:
            return "unauthenticated", "the tag does not verify (wrong key, topic or bytes)"
