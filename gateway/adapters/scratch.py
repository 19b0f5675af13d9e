"""Scratch copies of the gateway's database, for runs that must change nothing.

A replay that does not publish and `offers simulate` run the whole gateway, identity registry,
opt-out list, visit history and caps included, against a copy: the events they compute are
the ones the gateway would publish, and the live file is never written.

Invariants: the copy is taken with SQLite's online backup (consistent while a gateway writes
the source), is private (mode 0600), and its outbox is emptied (a run that does not publish
must not resend what the source still holds); the offer ledger is emptied on request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from presence_gateway.adapters.offer_store import TABLE as LEDGER_TABLE
from presence_gateway.errors import StoreError


def copy_database(source: str, target: str, *, clear_ledger: bool = False) -> None:
    if not Path(source).is_file():
        raise StoreError(f"no database at {source}")
    clear = ("outbox", LEDGER_TABLE) if clear_ledger else ("outbox",)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            tables = {r[0] for r in dst.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            for table in clear:
                if table in tables:
                    dst.execute(f"DELETE FROM {table}")  # fixed table names
            dst.commit()
        finally:
            src.close()
            dst.close()
        Path(target).chmod(0o600)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy {source}: {exc}") from None
