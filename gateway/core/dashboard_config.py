"""The `dashboard:` config section: who may log in, and how the pages show time.

```yaml
dashboard:
  admin: {user: admin, password: env:PG_DASHBOARD_PASSWORD}
  users:                                  # optional; roles: marketer, it, admin
    - {user: maria, role: marketer, password: file:/etc/presence-gateway/maria.pw}
    - {user: it-desk, role: it, password_hash: "$argon2id$v=19$..."}
  session_key: env:PG_DASHBOARD_KEY       # optional: sessions survive a restart
  secure_cookies: false                   # true behind TLS (a reverse proxy)
  timezones: {store-042: Europe/Berlin}   # default: store.timezone
  simulations: simulations/               # `offers simulate --report` files: why rules did
                                          # not fire, shown in the campaign view
```

Pure: passwords are read through the secret resolver (`env:` / `file:`, never written in the
YAML) or given as an argon2 hash; the dashboard shell hashes plain ones at start.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from presence_gateway.core.yamlread import Reader

ROLES = ("admin", "marketer", "it")
SecretResolver = Callable[[Reader, str, str], "str | None"]


@dataclass(frozen=True, slots=True)
class DashboardUser:
    name: str
    role: str
    password: str | None = field(default=None, repr=False)       # plain, from env:/file:
    password_hash: str | None = field(default=None, repr=False)  # argon2


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    users: tuple[DashboardUser, ...] = ()
    session_key: bytes | None = field(default=None, repr=False)
    secure_cookies: bool = False
    timezones: tuple[tuple[str, str], ...] = ()
    simulations: str | None = None


def read(r: Reader, section: str, resolve: SecretResolver) -> DashboardSettings:
    r.mapping(section)
    r.known_keys(section, {"admin", "users", "session_key", "secure_cookies", "timezones",
                           "simulations"})
    users: list[DashboardUser] = []
    if r.has(f"{section}.admin"):
        users.append(_user(r, f"{section}.admin", resolve, role="admin"))
    for path in r.each(f"{section}.users"):
        users.append(_user(r, path, resolve, role=None))
    key = None
    spec = r.opt_str(f"{section}.session_key")
    if spec is not None:
        text = resolve(r, f"{section}.session_key", spec)
        if text is not None and len(text) < 16:
            r.error(f"{section}.session_key", "the key must be at least 16 characters")
        elif text is not None:
            # A Fernet key is 32 url-safe base64 bytes: derive one from the secret.
            key = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
    zones: list[tuple[str, str]] = []
    for store, tz in r.mapping(f"{section}.timezones").items():
        try:
            ZoneInfo(str(tz))
        except Exception:
            r.error(f"{section}.timezones", f'{store}: unknown time zone "{tz}"')
            continue
        zones.append((str(store), str(tz)))
    sims = r.opt_str(f"{section}.simulations")
    return DashboardSettings(users=tuple(users), session_key=key,
                             secure_cookies=r.bool_(f"{section}.secure_cookies", False),
                             timezones=tuple(sorted(zones)),
                             simulations=None if sims is None else r.file_path(sims))


def _user(r: Reader, path: str, resolve: SecretResolver, role: str | None) -> DashboardUser:
    r.known_keys(path, {"user", "password", "password_hash"} | ({"role"} if role is None
                                                                  else set()))
    name = r.str_(f"{path}.user", "", required=True)
    role = role or r.str_(f"{path}.role", "", required=True, choices=ROLES)
    spec = r.opt_str(f"{path}.password")
    hashed = r.opt_str(f"{path}.password_hash")
    password = None
    if spec is not None:
        password = resolve(r, f"{path}.password", spec)
        if password is not None and len(password) < 8:
            r.error(f"{path}.password", "at least 8 characters")
    elif hashed is None or not hashed.startswith("$argon2"):
        r.error(f"{path}.password", "give password: env:NAME or file:PATH (or password_hash:"
                                    " an argon2 hash)")
    return DashboardUser(name, role, password, hashed)
