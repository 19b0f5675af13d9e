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

Formats (`--log-format`): `text` (a line per record), `json` (one JSON object per line: time
in RFC 3339, level, logger, message, exception; for log shippers) and `journal` (text with
the sd-daemon(3) `<N>` priority prefix, so journald files WARNING as warning and `journalctl
-p err` works). `auto`, the default, is `journal` when stderr is the journal (systemd sets
JOURNAL_STREAM to its device:inode) and `text` otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable

import orjson

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


FORMATS = ("auto", "text", "json", "journal")
# syslog priorities (sd-daemon(3)): err 3, warning 4, info 6, debug 7.
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """Text with the `<N>` priority prefix journald reads from a service's stderr."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 7 if record.levelno < logging.INFO else 3)
        # journald stamps its own time; every line of a traceback gets the prefix.
        text = f"{record.name}: {super().format(record)}"
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        body = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
                + f".{int(t % 1 * 1000):03d}Z",
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


def on_journal() -> bool:
    """True when stderr is connected to the journal (JOURNAL_STREAM is its device:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "auto":
        fmt = "journal" if on_journal() else "text"
    if fmt == "json":
        return JsonFormatter()
    if fmt == "journal":
        return JournalFormatter("%(message)s")
    return logging.Formatter(FORMAT)


def configure(verbose: bool, debug_loggers: Iterable[str] = (), fmt: str = "auto") -> None:
    """Log to stderr at INFO; DEBUG for the gateway with `verbose` and for `debug_loggers`."""
    allowed = ((OWN,) if verbose else ()) + tuple(debug_loggers)
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(formatter(fmt))
    root.setLevel(logging.INFO)  # the cap every logger without a level of its own inherits
    logging.getLogger(OWN).setLevel(logging.NOTSET)  # an earlier in-process call's -v
    for name in allowed:
        logging.getLogger(name).setLevel(logging.DEBUG)
    cap = DebugCap(allowed)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, DebugCap)]:
            handler.removeFilter(old)  # main() may run more than once in one process (tests)
        handler.addFilter(cap)
