"""The `identity` section of the gateway config, read through the shared Reader.

```yaml
identity:
  sync_key: env:IDENTITY_SYNC_KEY   # or file:/etc/presence/sync.key; >= 16 characters.
                                    # Absent: every sync message is rejected (no_key).
  snapshot_topic: ...               # default {prefix}/v1/{store}/identity/snapshot
  updates_topic: ...                # default {prefix}/v1/{store}/identity/updates
  app_token:
    uuid: 2f234454-cf6d-4a0f-adf2-f4911ba9ffa6   # the retailer app's iBeacon UUID
    window: 5m                      # must equal the app's window (docs/app_token.md)
    tolerance: 1                    # windows of clock skew accepted each way
  eid_tolerance: 1                  # Eddystone-EID rotation periods accepted each way
```

Invariants: errors have the shared `file:line key: message` shape; the sync key is read from the
environment or a file, never written in the config, and never shown by `repr`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from presence_gateway.core.identity.resolve import normalize_uuid
from presence_gateway.core.yamlread import Reader, read_secret

SecretResolver = Callable[[Reader, str, str], "str | None"]
_TOPIC = r"[^#+\s]+(/[^#+\s]+)*"


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    sync_key: bytes = field(default=b"", repr=False)  # empty: sync refused (no_key)
    snapshot_topic: str | None = None  # None: {prefix}/v1/{store}/identity/snapshot
    updates_topic: str | None = None
    app_uuid: str | None = None
    app_window_s: int = 300
    app_tolerance: int = 1
    eid_tolerance: int = 1


def env_or_file(env: Mapping[str, str] | None = None) -> SecretResolver:
    """A resolver for "env:NAME" / "file:PATH" specs (config.py passes its own)."""
    environ = os.environ if env is None else env

    def resolve(r: Reader, key: str, spec: str) -> str | None:
        return read_secret(r, key, spec, environ)

    return resolve


def read(r: Reader, section: str, resolve_secret: SecretResolver | None = None) -> IdentitySettings:
    r.mapping(section)
    r.known_keys(section, {"sync_key", "snapshot_topic", "updates_topic", "app_token",
                           "eid_tolerance"})
    r.known_keys(f"{section}.app_token", {"uuid", "window", "tolerance"})
    key = b""
    spec = r.opt_str(f"{section}.sync_key")
    if spec is not None:
        text = (resolve_secret or env_or_file())(r, f"{section}.sync_key", spec)
        key = (text or "").encode()
        if text is not None and len(key) < 16:
            r.error(f"{section}.sync_key", "the key must be at least 16 characters")
    uuid = r.opt_str(f"{section}.app_token.uuid")
    if uuid is not None:
        try:
            uuid = normalize_uuid(uuid)
        except ValueError:
            r.error(f"{section}.app_token.uuid", "expected a UUID (32 hex digits)")
            uuid = None
    window = r.duration(f"{section}.app_token.window", 300.0, minimum=10.0)
    if window != int(window):
        r.error(f"{section}.app_token.window", "expected a whole number of seconds")
    topics = {k: r.str_(f"{section}.{k}", "", pattern=_TOPIC) or None
              for k in ("snapshot_topic", "updates_topic")}
    return IdentitySettings(
        sync_key=key, snapshot_topic=topics["snapshot_topic"],
        updates_topic=topics["updates_topic"], app_uuid=uuid, app_window_s=int(window),
        app_tolerance=r.int_(f"{section}.app_token.tolerance", 1, 0, 12),
        eid_tolerance=r.int_(f"{section}.eid_tolerance", 1, 0, 4),
    )
