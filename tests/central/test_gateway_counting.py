"""The health view's "Wi-Fi placement" column: from each gateway's stats to the database.

A gateway's `presence.gateway.stats` carries `wifi_placement` per Wi-Fi sensor (offset, where it
comes from, `cautious` while the sensor's scale is not known: core/presence/placement.py). The
central model turns it into words (untrusted input: anything malformed is left out), the
consumer's commit keeps the last one per gateway, and a database made by an older version
gets the column when it is opened.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from presence_gateway.central.dashboard import queries
from presence_gateway.central.db import Commit, open_db
from presence_gateway.central.model import MAX_SENSORS_SHOWN, Event, counting


def stats(seq: int, placement: Any, gw: str = "gw1") -> Event:
    data: dict[str, Any] = {"outbox_depth": 3}
    if placement is not None:
        data["wifi_placement"] = placement
    return Event(f"id-{gw}-{seq}", "s1", gw, seq, "presence.gateway.stats", "t", None, data,
                 seq)


def test_each_sensor_in_words() -> None:
    got = counting(stats(1, {
        "door": {"offset_db": -6.0, "source": "learnt", "cautious": False},
        "back": {"offset_db": 0.0, "source": "learning", "cautious": True},
        "till": {"offset_db": 2.0, "source": "configured", "cautious": False},
        "new": {"offset_db": 0.0, "source": "learning", "cautious": False}}))
    assert got == ("back: cautious, placement not learnt yet; door: offset -6 dB learnt; "
                   "new: learning; till: offset +2 dB from the walk test")
    assert counting(stats(2, {"gw1": {"offset_db": 0.0, "source": "learnt",
                                      "cautious": False}})) == "gw1: offset 0 dB learnt"


def test_malformed_or_absent_placement_says_nothing_or_less() -> None:
    assert counting(stats(1, None)) is None  # a BLE-only gateway
    assert counting(stats(2, "hot")) is None
    assert counting(stats(3, {})) is None
    assert counting(stats(4, {"a": 5, "b": {"offset_db": "x", "source": "learnt"}})) == \
        "b: offset ? learnt"
    assert counting(stats(5, {"b": {"offset_db": float("nan"), "source": "configured"}})) == \
        "b: offset ? from the walk test"
    many = {f"s{i:02d}": {"offset_db": 0.0, "source": "learnt"} for i in range(20)}
    text = counting(stats(6, many))
    assert text is not None and text.endswith(f"+{20 - MAX_SENSORS_SHOWN} more")
    footfall = Event("id-f", "s1", "gw1", 7, "presence.footfall", "t", None,
                     {"wifi_placement": many}, 7)
    assert counting(footfall) is None  # only a stats event speaks for the gateway


async def test_the_last_stats_of_a_gateway_reach_the_health_view(tmp_path: Path) -> None:
    # A database made before the column existed: opening it adds the column, keeps the rows.
    path = tmp_path / "central.db"
    old = sqlite3.connect(path)
    old.execute("""CREATE TABLE gateways (key TEXT PRIMARY KEY, store TEXT NOT NULL,
        gateway TEXT NOT NULL, last_sequence BIGINT, status TEXT,
        status_time DOUBLE PRECISION, last_seen DOUBLE PRECISION, outbox_depth BIGINT)""")
    old.execute("INSERT INTO gateways (key, store, gateway, last_sequence) VALUES"
                " ('s1/gw0', 's1', 'gw0', 41)")
    old.commit()
    old.close()
    db = await open_db(f"sqlite:///{path}")
    try:
        c = Commit()
        for i, p in enumerate(({"gw1": {"offset_db": 0.0, "source": "learning",
                                        "cautious": True}},
                               {"gw1": {"offset_db": -6.0, "source": "learnt",
                                        "cautious": False}})):
            c.note(stats(i + 1, p))
        await db.commit(c)
        rows = {g["gateway"]: g for g in await queries.health(db)}
        assert rows["gw1"]["counting"] == "gw1: offset -6 dB learnt"  # the batch's last
        assert rows["gw1"]["outbox_depth"] == 3
        assert rows["gw0"]["counting"] is None and rows["gw0"]["last_sequence"] == 41
        report = (await db.report())["gateways"]  # `central report` (--json) says it too
        assert report["s1/gw1"]["wifi_placement"] == "gw1: offset -6 dB learnt"
        assert report["s1/gw0"]["wifi_placement"] is None
        await db.setup()  # a second open of the same database: nothing to add
    finally:
        await db.close()


def test_central_report_names_each_gateways_placement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from presence_gateway.cli.main import main

    url = f"sqlite:///{tmp_path / 'central.db'}"

    async def fill() -> None:
        db = await open_db(url)
        try:
            c = Commit()
            c.note(stats(1, {"gw1": {"offset_db": 0.0, "source": "learning", "cautious": True}}))
            await db.commit(c)
        finally:
            await db.close()

    asyncio.run(fill())
    assert main(["central", "report", "--db", url]) == 0
    assert "s1/gw1:" in (out := capsys.readouterr().out)
    assert "wifi placement: gw1: cautious, placement not learnt yet" in out
