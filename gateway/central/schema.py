"""The central database's tables, for SQLite and PostgreSQL alike (central/db.py creates them).

Every statement is idempotent (IF NOT EXISTS, ON CONFLICT DO NOTHING): each consumer runs them
all when it opens the database.
"""

from __future__ import annotations

# Columns added after the first release: `setup` adds them to a database made before them.
ADDED = (("gateways", "counting", "TEXT"),)


def schema(pg: bool) -> list[str]:
    """The statements that create every table (`pg`: PostgreSQL's types, else SQLite's)."""
    serial = "BIGSERIAL PRIMARY KEY" if pg else "INTEGER PRIMARY KEY AUTOINCREMENT"
    typed = "event_id TEXT PRIMARY KEY, store TEXT NOT NULL, gateway TEXT NOT NULL"
    return [
        f"""CREATE TABLE IF NOT EXISTS events (applied {serial}, id TEXT NOT NULL UNIQUE,
            store TEXT NOT NULL, gateway TEXT NOT NULL, seq BIGINT NOT NULL, type TEXT NOT NULL,
            time TEXT, subject TEXT, data TEXT NOT NULL, received DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS events_gw ON events (store, gateway, seq)",
        f"""CREATE TABLE IF NOT EXISTS visits ({typed}, visit_id TEXT, phase TEXT, device TEXT,
            radio TEXT, duration_s DOUBLE PRECISION, customer_id TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS footfall ({typed}, time TEXT, present DOUBLE PRECISION,
            entries BIGINT, exits BIGINT, passers_by BIGINT)""",
        f"CREATE TABLE IF NOT EXISTS occupancy ({typed}, time TEXT, subject TEXT, state TEXT)",
        f"""CREATE TABLE IF NOT EXISTS links ({typed}, visit_id TEXT, customer_id TEXT,
            method TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS offers ({typed}, offer_id TEXT, customer_id TEXT,
            visit_id TEXT, zone TEXT)""",
        """CREATE TABLE IF NOT EXISTS gateways (key TEXT PRIMARY KEY, store TEXT NOT NULL,
            gateway TEXT NOT NULL, last_sequence BIGINT, status TEXT,
            status_time DOUBLE PRECISION, last_seen DOUBLE PRECISION, outbox_depth BIGINT,
            counting TEXT)""",
        """CREATE TABLE IF NOT EXISTS gaps (store TEXT NOT NULL, gateway TEXT NOT NULL,
            first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, found DOUBLE PRECISION,
            PRIMARY KEY (store, gateway, first_seq))""",
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        """INSERT INTO counters (name, value) VALUES ('duplicates', 0)
            ON CONFLICT (name) DO NOTHING""",
        """CREATE TABLE IF NOT EXISTS leases (partition TEXT PRIMARY KEY, owner TEXT NOT NULL,
            expires DOUBLE PRECISION NOT NULL, consuming DOUBLE PRECISION)""",
        """CREATE TABLE IF NOT EXISTS members (owner TEXT PRIMARY KEY,
            expires DOUBLE PRECISION NOT NULL)""",
    ]
