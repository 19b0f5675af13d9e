"""Shell glue for identity: registry <-> index, linker, opt-out list, MQTT sync.

The builder (runtime/assembly.py) starts it first, then builds the core around its index,
linker and opt-out list; the control plane feeds it sync messages and tends it:
    rt = await IdentityRuntime.start(outbox, pseudonymizer, settings, prefix=..., store=...)
    boundary = Boundary(pseudonymizer, resolver=rt.index.resolve, opt_out=rt.opt_out)
    ... await rt.on_message(topic, payload, now)  -> rejection events, opt-out changes
    periodically: await rt.flush(); await rt.reload_if_changed(); await rt.purge(now, days)
After anything that may change the opt-out list, the control plane hands `rt.opt_out` to the
boundary (`Boundary.replace_opt_out`); this class never reaches into the core.

Invariants:
- A sync message is applied to SQLite first (one transaction), then to memory (index, opt-out,
  linker); a rejected one changes neither and yields one `presence.command.rejected` event.
- Messages are handled one at a time (a lock), so versions are checked against the committed
  state, never against a change still being written.
- Nothing here logs a payload: rejections log the reason code and detail only.
"""

from __future__ import annotations

import asyncio
import logging

from presence_gateway.adapters.identity_store import OutboxLike, Purged, Registry, RegistryState
from presence_gateway.core.events import Event
from presence_gateway.core.identity.config import IdentitySettings
from presence_gateway.core.identity.index import IdentityIndex
from presence_gateway.core.identity.link import IdentityContext, Linker
from presence_gateway.core.identity.sync import SNAPSHOT, UPDATE, SyncChange, SyncRejected, check
from presence_gateway.core.identity.sync import rejection_event as _rejection
from presence_gateway.core.identity.sync import topics as _topics
from presence_gateway.core.privacy import Pseudonymizer
from presence_gateway.errors import StoreError

log = logging.getLogger("presence_gateway.identity")


class IdentityRuntime:
    def __init__(self, registry: Registry, pseudonymizer: Pseudonymizer,
                 settings: IdentitySettings, state: RegistryState, *, prefix: str,
                 store: str) -> None:
        self.registry = registry
        self._hasher = pseudonymizer.stable_hash
        self.settings = settings
        self.store = store
        default_snapshot, default_updates = _topics(prefix, store)
        self.snapshot_topic = settings.snapshot_topic or default_snapshot
        self.updates_topic = settings.updates_topic or default_updates
        self.index = IdentityIndex(self._hasher, app_uuid=settings.app_uuid,
                                   app_window_s=settings.app_window_s,
                                   app_tolerance=settings.app_tolerance,
                                   eid_tolerance=settings.eid_tolerance)
        self.linker = Linker(self.index.get, state.visits)
        self.context = IdentityContext(self.index, self.linker)
        self.opt_out: frozenset[str] = frozenset()
        self.version = 0
        self._lock = asyncio.Lock()
        self._data_version: int | None = None
        self._apply(state)

    @classmethod
    async def start(cls, outbox: OutboxLike, pseudonymizer: Pseudonymizer,
                    settings: IdentitySettings, *, prefix: str, store: str) -> IdentityRuntime:
        """Attach to the outbox's DB file and load everything (StoreError on a wrong secret)."""
        registry = await Registry.attach(outbox)
        state = await registry.load(pseudonymizer.stable_hash)
        rt = cls(registry, pseudonymizer, settings, state, prefix=prefix, store=store)
        rt._data_version = await rt._pragma_data_version()
        return rt

    @property
    def topics(self) -> tuple[str, str]:
        return self.snapshot_topic, self.updates_topic

    async def _load(self) -> None:
        self._apply(await self.registry.load(self._hasher))
        self._data_version = await self._pragma_data_version()

    def _apply(self, state: RegistryState) -> None:
        self.index.replace(state.entries)
        self.opt_out = state.opt_out
        self.version = state.version
        if self.index.unusable:
            log.warning("%d app-token entries cannot match: set identity.app_token.uuid",
                        len(self.index.unusable))

    async def on_message(self, topic: str, payload: bytes, now: float) -> list[Event]:
        """A message on a sync topic -> [] when applied or ignored, else [rejection event]."""
        kind = SNAPSHOT if topic == self.snapshot_topic else UPDATE
        async with self._lock:
            result = check(payload, kind=kind, store=self.store, key=self.settings.sync_key,
                           current_version=self.version, hasher=self._hasher)
            if isinstance(result, SyncRejected):
                # Logged (rate-limited) by the control plane with the rejection event.
                return [_rejection(result, now, topic)]
            if isinstance(result, SyncChange):
                await self.registry.apply_sync(result, self._hasher, now)
                for customer in result.delete_customers:
                    self.linker.forget(customer)
                await self._load()
                log.info("identity sync %s v%d applied: %d entries, %d opted out", kind,
                         result.version, len(self.index), len(self.opt_out))
            return []

    async def flush(self) -> None:
        """Store the linker's new visit records (call it with the outbox batch cadence)."""
        await self.registry.add_visits(self.linker.take_visits())

    async def forget(self, customer_id: str) -> None:
        """Erasure while running (e.g. from a command): store first, then memory."""
        async with self._lock:
            await self.registry.forget(customer_id)
            self.linker.forget(customer_id)
            await self._load()

    async def purge(self, now: float, retention_days: float) -> Purged:
        purged = await self.registry.purge(now, retention_days)
        self.linker.purge(now - retention_days * 86400.0)
        if purged.expired_entries:
            await self._load()
        return purged

    async def reload_if_changed(self) -> bool:
        """Pick up changes another process committed (the `identities` CLI on a live file)."""
        current = await self._pragma_data_version()
        if current == self._data_version:
            return False
        async with self._lock:
            await self._load()
        return True

    async def _pragma_data_version(self) -> int | None:
        try:
            return await self.registry.data_version()
        except StoreError:
            return None
