"""`offers simulate`: the gateway itself, replaying captures without publishing.

A simulation is `open_runtime` in `Mode.SIMULATE` (capture time, nothing published) over a
scratch copy of the gateway's database: the identity registry, opt-out list and visit history
are the real ones (or come from an import file), the offer ledger starts empty, and the live
database is never written. The throttle, the privacy boundary, the pseudonymizer, presence,
linking and offers are the very objects `run` and `replay` build, so a marketer's preview is
exactly what the gateway will do on the same recordings.

Invariants:
- The source database is read through SQLite's online backup (adapters/scratch.py); the
  copy's outbox and offer ledger are emptied before the run; `Mode.SIMULATE` tells the
  builder this database is already a scratch one.
- The scratch directory is removed when the simulation ends, whatever happens.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from presence_gateway.adapters.identity_store import Registry
from presence_gateway.adapters.scratch import copy_database
from presence_gateway.core.config import GatewayConfig
from presence_gateway.core.events import EventType
from presence_gateway.core.identity.index import Entry
from presence_gateway.core.model import OutboundMessage
from presence_gateway.drivers.base import Driver
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.core import pseudonymizer_for
from presence_gateway.runtime.service import RunSummary, Service

_OFFER_TOPIC_END = "/" + EventType.OFFER_TRIGGERED.value


@dataclass(slots=True)
class SimulationResult:
    summary: RunSummary
    messages: list[OutboundMessage] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)
    registered: int = 0

    @property
    def offers(self) -> list[OutboundMessage]:
        return [m for m in self.messages if m.topic.endswith(_OFFER_TOPIC_END)]


async def simulate(cfg: GatewayConfig, captures: Sequence[str] = (), *,
                   drivers: Sequence[Driver] | None = None, db: str | None = None,
                   entries: Sequence[Entry] | None = None) -> SimulationResult:
    """Replay `captures` (or recorded `drivers`) through the gateway `cfg` describes, its
    rules included, on a scratch copy of `db` (or an empty database, plus `entries` when
    given), publishing nothing."""
    from presence_gateway.drivers.registry import replay_settings

    with tempfile.TemporaryDirectory(prefix="presence-gateway-simulate-") as tmp:
        scratch = str(Path(tmp) / "gateway.db")
        if db is not None:
            copy_database(db, scratch, clear_ledger=True)  # before the run starts
        registered = 0
        async with await Registry.open(scratch) as reg:
            if entries:
                await reg.import_entries(entries, pseudonymizer_for(cfg).stable_hash,
                                         time.time())
            registered = len(await reg.entries())
        sim_cfg = dataclasses.replace(
            cfg, drivers=replay_settings(captures) if captures else cfg.drivers,
            storage=dataclasses.replace(cfg.storage, path=scratch))
        messages: list[OutboundMessage] = []
        service = Service(sim_cfg, RunOptions(mode=Mode.SIMULATE, publish=False,
                                              on_message=messages.append), drivers)
        summary = await service.run()
        result = SimulationResult(summary, messages, registered=registered)
        assert service.runtime is not None
        offers = service.runtime.core.offers
        if offers is not None:
            result.fired = dict(offers.fired)
            result.suppressed = dict(offers.suppressed)
        return result
