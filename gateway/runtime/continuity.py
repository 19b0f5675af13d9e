"""Restarts keep the day (shell side): thaw the last snapshot into a new gateway at start,
freeze one at every clean stop and, live, every `SNAPSHOT_S` (so a watchdog kill or a power
cut loses at most that much presence state; the events themselves are in the outbox).

Invariants: only with a stable privacy secret (with `random`, device keys change at every
start and yesterday's units could never be matched again); a snapshot that cannot be used is
logged with its reason and discarded, never fatal (one with other settings or too old still
hands over what was learnt of the sensors: core/continuity.py); the snapshot is deleted once
thawed, so a crash loop cannot replay the same state twice.
"""

from __future__ import annotations

import logging
import time

from presence_gateway.adapters.snapshot_store import SnapshotStore
from presence_gateway.core.continuity import adopt, freeze, snapshot_key, thaw
from presence_gateway.runtime.assembly import Runtime

log = logging.getLogger("presence_gateway")
SNAPSHOT_S = 60.0
MAX_AGE_S = 24 * 3600.0  # wall clock, live only: older state is not "the day" any more


def enabled(rt: Runtime) -> bool:
    return rt.cfg.privacy.secret_source != "random"


async def restore(rt: Runtime) -> bool:
    """Thaw the stored snapshot into `rt`'s core; True when the state was taken over."""
    if not enabled(rt):
        return False
    store = SnapshotStore(rt.outbox)
    blob = await store.load()
    if blob is None:
        return False
    await store.clear()
    live = not rt.options.mode.capture_time
    result = thaw(blob, key=snapshot_key(rt.cfg.privacy.secret), engine=rt.core.engine,
                  now=time.time() if live else None, max_age_s=MAX_AGE_S)
    if isinstance(result, str):
        log.warning("continuity snapshot not used: %s; starting the day's state afresh", result)
        return False
    adopt(rt.core.pipeline, rt.core.engine, result)
    if not result.day:
        log.warning("continuity snapshot: the day's state not used (%s); the sensors' learnt "
                    "placement and channel plans carried over", result.why)
        return False
    log.info("continued from the snapshot of %s: %d device(s) and the day's counters",
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(result.taken_at)),
             rt.core.engine.tracked)
    return True


async def save(rt: Runtime, taken_at: float) -> None:
    if enabled(rt):
        blob = freeze(rt.core.pipeline, rt.core.engine, taken_at=taken_at,
                      key=snapshot_key(rt.cfg.privacy.secret))
        await SnapshotStore(rt.outbox).save(taken_at, blob)
