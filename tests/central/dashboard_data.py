"""A central database filled the way `central run` fills it, from a replay of real captures.

Store `store-042`: the Brno lab's 2023-02-16 Wi-Fi capture (MIT, read from ../shared; about 15
people in the lab). Store `store-017`: the demo's bundled captures. Each goes through the real
gateway (replay mode), each published message is parsed by the central model and committed by
the central database, so the dashboard reads exactly what a fleet's consumer would write.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from presence_gateway.central.ingest import commit_messages, commit_of
from presence_gateway.central.model import Status
from presence_gateway.core.config import parse_config
from presence_gateway.core.model import OutboundMessage
from presence_gateway.drivers.registry import replay_settings
from presence_gateway.runtime.assembly import Mode, RunOptions
from presence_gateway.runtime.service import Service

STORE, GATEWAY, TZ = "store-042", "gw-entrance", "Europe/Prague"
OTHER = "store-017"
BRNO = (Path(__file__).resolve().parents[3] / "shared" / "data" / "captures" / "wifi"
        / "brno_sc6-61" / "position_1_sc6-61_2023-02-16_anonymized.pcap")


def replayed_messages(tmp_path: Path, store: str = STORE,
                      captures: list[str] | None = None) -> list[OutboundMessage]:
    cfg = parse_config(f"store: {{id: {store}, timezone: {TZ}}}\ngateway: {{id: {GATEWAY}}}\n"
                       f"storage: {{path: '{tmp_path / (store + '.db')}'}}\n", "t.yaml")
    paths = captures if captures is not None else [str(BRNO)]
    cfg = dataclasses.replace(cfg, drivers=replay_settings(paths))
    out: list[OutboundMessage] = []
    asyncio.run(Service(cfg, RunOptions(mode=Mode.REPLAY, publish=False,
                                        on_message=out.append)).run())
    return out


async def commit(url: str, messages: list[OutboundMessage]) -> None:
    """What `central run` would store, plus each store's gateway online."""
    stores = {e.store for e in commit_of(messages).events}
    await commit_messages(url, messages, [Status(s, GATEWAY, "online", None) for s in stores])
