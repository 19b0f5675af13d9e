"""Home Assistant discovery on the broker: the wanted configs (core/ha_discovery.py) are
published retained at QoS 1 after every connect (a broker without persistence forgets them on
restart), stale ones emptied once, and the published set remembered in the gateway's SQLite.

Invariants: runs only in live mode, as a guarded side task; it reads the publisher's
`connects` counter to notice a new connection (no hook inside the publisher); it never
touches the outbox's rows, only its own table through the outbox's transaction.
"""

from __future__ import annotations

import asyncio

from presence_gateway import __version__
from presence_gateway.adapters.ha_store import DiscoveryStore
from presence_gateway.core.ha_discovery import discovery_messages, removals
from presence_gateway.runtime.assembly import Runtime

POLL_S = 0.5


async def announce(rt: Runtime) -> None:
    """Until cancelled: (re)publish discovery after each new broker connection."""
    pub = rt.publisher
    if pub is None:
        return
    cfg = rt.cfg
    wanted = discovery_messages(cfg.home_assistant, rt.core.topics, store_id=cfg.store_id,
                                gateway_id=cfg.gateway_id,
                                zones=[z.name for z in cfg.presence.zones], version=__version__)
    store = DiscoveryStore(rt.outbox)
    stale = removals(await store.published(), wanted)
    if not wanted and not stale:
        return
    seen = 0
    while True:
        if pub.connected and pub.connects != seen:
            seen = pub.connects
            sent = all(pub.publish_now(topic, payload, qos=1, retain=True)
                       for topic, payload in (stale | wanted).items())
            if sent and stale:
                stale = {}
            if sent:
                await store.replace(wanted)
        await asyncio.sleep(POLL_S)
