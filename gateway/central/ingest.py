"""Published messages straight into a central database, as `central run` would store them:
parsed by the central model, committed in one transaction. For a single machine that has the
messages in hand (the demo, the dashboard's tests and benchmark); a fleet uses `central run`.
"""

from __future__ import annotations

from collections.abc import Iterable

from presence_gateway.central.db import Commit, open_db
from presence_gateway.central.model import Event, Status, parse
from presence_gateway.core.model import OutboundMessage


def commit_of(messages: Iterable[OutboundMessage]) -> Commit:
    """The events and statuses among `messages`, with each gateway's last sequence."""
    c = Commit()
    for m in messages:
        item = parse(m.topic, m.payload)
        if isinstance(item, Event):
            c.events.append(item)
            key = f"{item.store}/{item.gateway}"
            last = c.positions.get(key, (item.store, item.gateway, 0))[2]
            c.positions[key] = (item.store, item.gateway, max(last, item.seq))
            c.note(item)  # outbox depth, Wi-Fi placement
        elif isinstance(item, Status):
            c.statuses.append(item)
    return c


async def commit_messages(url: str, messages: Iterable[OutboundMessage],
                          extra: Iterable[Status] = ()) -> None:
    db = await open_db(url)
    try:
        c = commit_of(messages)
        c.statuses.extend(extra)
        await db.commit(c)
    finally:
        await db.close()
