"""The demo's last step: its events into a central database, and the dashboard over it.

What the demo published (and its subscriber received) is parsed by the central model and
committed by the central database, exactly as `central run` would, into
`var/demo/central.db`; a config with a generated admin password (`var/demo/dashboard.yaml`,
the password in `var/demo/dashboard.pw`, both 0600) lets `presence-gateway dashboard` serve it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from presence_gateway.core.model import OutboundMessage

DEMO_DIR = Path("var/demo")


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def prepare(messages: list[OutboundMessage], timezone: str, folder: Path = DEMO_DIR
            ) -> tuple[str, Path, str]:
    """(database URL, dashboard config, admin password) for the demo's dashboard."""
    folder.mkdir(parents=True, exist_ok=True)
    db_path = (folder / "central.db").absolute()
    db_path.unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    asyncio.run(_commit(url, messages))
    password = secrets.token_urlsafe(12)
    _private(folder / "dashboard.pw", password + "\n")
    config = folder / "dashboard.yaml"
    _private(config, f"store: {{id: demo-store, timezone: {timezone}}}\n"
                     "dashboard:\n  admin: {user: admin, password: file:dashboard.pw}\n")
    return url, config, password


async def _commit(url: str, messages: list[OutboundMessage]) -> None:
    from presence_gateway.central.db import Commit, open_db
    from presence_gateway.central.model import Event, Status, parse
    db = await open_db(url)
    try:
        c = Commit()
        for m in messages:
            item = parse(m.topic, m.payload)
            if isinstance(item, Event):
                c.events.append(item)
                key = f"{item.store}/{item.gateway}"
                last = c.positions.get(key, (item.store, item.gateway, 0))[2]
                c.positions[key] = (item.store, item.gateway, max(last, item.seq))
            elif isinstance(item, Status):
                c.statuses.append(item)
        await db.commit(c)
    finally:
        await db.close()
