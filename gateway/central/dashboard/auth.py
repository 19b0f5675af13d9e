"""Who may read the dashboard: users, password checks and session cookies.

Invariants:
- Passwords are never stored or compared in the clear: the config names a source (`env:` /
  `file:`) or an argon2 hash; a plain source is hashed with argon2id (argon2-cffi) at start
  and the text dropped, and every check is an argon2 verify (slow on purpose, constant time).
- A session is a Fernet token (AES-CBC + HMAC, `cryptography`) in an HttpOnly, SameSite=Strict
  cookie: user, role, expiry and a CSRF token; nothing else is kept server-side, a tampered or
  expired cookie is simply no session. `Secure` is set when `secure_cookies` (behind TLS).
- Roles: `admin` sees everything; `marketer` the store and campaign aggregates (never a device
  key: the dashboard has none to show) but not fleet health; `it` health and the chain view.
- Failed logins are limited per client address (a few a minute) so a password cannot be
  guessed at wire speed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

ROLES = ("admin", "marketer", "it")
COOKIE = "pg_session"
SESSION_S = 12 * 3600.0
FAILURES_PER_MINUTE = 5


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    csrf: str

    def may(self, what: str) -> bool:
        """`what`: "stores", "campaigns" or "health"."""
        if self.role == "admin":
            return True
        if self.role == "marketer":
            return what in ("stores", "campaigns")
        return what in ("stores", "health")


_hasher = PasswordHasher()


def hash_password(text: str) -> str:
    return _hasher.hash(text)


class Auth:
    def __init__(self, users: list[User], *, key: bytes | None = None,
                 secure_cookies: bool = False) -> None:
        self.users = {u.name: u for u in users}
        self.fernet = Fernet(key or Fernet.generate_key())
        self.secure_cookies = secure_cookies
        self._failures: dict[str, list[float]] = {}
        # A constant hash to verify against for unknown users: same cost, no user oracle.
        self._decoy = hash_password(secrets.token_hex(16))

    def throttled(self, client: str, now: float) -> bool:
        recent = [t for t in self._failures.get(client, []) if now - t < 60.0]
        self._failures[client] = recent
        return len(recent) >= FAILURES_PER_MINUTE

    def login(self, client: str, name: str, password: str, now: float) -> Session | None:
        if self.throttled(client, now):
            return None
        user = self.users.get(name)
        try:
            ok = _hasher.verify(user.hash if user else self._decoy, password) and user is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None:
            self._failures.setdefault(client, []).append(now)
            return None
        return Session(user.name, user.role, secrets.token_urlsafe(24))

    def cookie(self, s: Session, now: float) -> str:
        body = orjson.dumps({"u": s.user, "r": s.role, "c": s.csrf, "x": now + SESSION_S})
        return self.fernet.encrypt(body).decode()

    def session(self, cookie: str | None, now: float) -> Session | None:
        if not cookie:
            return None
        try:
            body = orjson.loads(self.fernet.decrypt(cookie.encode()))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        if not isinstance(body, dict) or float(body.get("x", 0)) < now:
            return None
        user = self.users.get(str(body.get("u")))
        if user is None or user.role != body.get("r"):  # removed or demoted since
            return None
        return Session(user.name, user.role, str(body.get("c")))


def now() -> float:
    return time.time()
