"""One part of test_continuity's restart, in whichever build this process imports.

    python -m tests.compiled_restart whole|first|second DB_DIR BROKER_URL OUT.json

tests/test_compiled.py runs the two halves of a restart in different builds (pure Python,
compiled) on one database: the snapshot one build writes, the other thaws. OUT gets the
build that ran and the events published.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import orjson

from presence_gateway.build import describe
from presence_gateway.cli.demo import demo_captures
from tests.integration.test_continuity import replay
from tests.integration.test_spine import config, real_sightings


def main(part: str, db: str, url: str, out: str) -> None:
    cfg = config(Path(db), types.SimpleNamespace(url=url), demo_captures())  # type: ignore[arg-type]
    sightings = real_sightings(cfg)
    half = len(sightings) // 2
    part_of = {"whole": sightings, "first": sightings[:half], "second": sightings[half:]}
    events = replay(cfg, part_of[part], interrupt=part == "first")
    Path(out).write_bytes(orjson.dumps({"build": describe(), "events": events}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
