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

from presence_gateway.central.ingest import commit_messages
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
    asyncio.run(commit_messages(url, messages))
    password = secrets.token_urlsafe(12)
    _private(folder / "dashboard.pw", password + "\n")
    config = folder / "dashboard.yaml"
    _private(config, f"store: {{id: demo-store, timezone: {timezone}}}\n"
                     "dashboard:\n  admin: {user: admin, password: file:dashboard.pw}\n")
    return url, config, password
