"""Log setup for every command: who may write DEBUG lines.

`-v` turns on the gateway's own debug lines (`presence_gateway` and below) and nothing else.
Every other logger (aiosqlite, asyncio, paho, bleak, scapy, urllib3, ...) is capped at INFO:
aiosqlite's debug lines print each SQL call with its values (IRKs, app secrets, customer ids),
so `-v` on a gateway holding a registry would write secrets to the journal. A library's debug
lines appear only when asked for by name: `--debug-logger aiosqlite` (repeatable; a name
covers its children), knowing what they may contain.

Two layers: logger levels keep capped records from being created at all (aiosqlite logs two
per query), and a filter on the handlers drops any that a library's own `setLevel` lets
through.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

OWN = "presence_gateway"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class DebugCap(logging.Filter):
    """Passes INFO and above from anyone, DEBUG only from the named loggers and children."""

    def __init__(self, allowed: Iterable[str]) -> None:
        super().__init__()
        self.allowed = tuple(allowed)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        name = record.name
        return any(name == a or name.startswith(a + ".") for a in self.allowed)


def configure(verbose: bool, debug_loggers: Iterable[str] = ()) -> None:
    """Log to stderr at INFO; DEBUG for the gateway with `verbose` and for `debug_loggers`."""
    allowed = ((OWN,) if verbose else ()) + tuple(debug_loggers)
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr)
    root = logging.getLogger()
    root.setLevel(logging.INFO)  # the cap every logger without a level of its own inherits
    logging.getLogger(OWN).setLevel(logging.NOTSET)  # an earlier in-process call's -v
    for name in allowed:
        logging.getLogger(name).setLevel(logging.DEBUG)
    cap = DebugCap(allowed)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, DebugCap)]:
            handler.removeFilter(old)  # main() may run more than once in one process (tests)
        handler.addFilter(cap)
