"""One error tree the installer can act on.

Shells translate foreign exceptions (OSError, sqlite3, paho, BlueZ) into these at their edge;
the CLI maps them to exit codes and one readable line, never a traceback.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway reports to a person."""

    exit_code = 1


class ConfigError(GatewayError):
    """A config or rules file is wrong: names the file, the key path and the line."""

    exit_code = 2

    def __init__(self, path: str, key: str, line: int | None, message: str) -> None:
        self.path = path
        self.key = key
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where} {key}: {message}" if key else f"{where}: {message}")


class ConfigErrors(GatewayError):
    """Several config errors found in one pass (a file is validated whole)."""

    exit_code = 2

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class DriverError(GatewayError):
    """A radio or capture source cannot go on; `reason` is a short stable code."""

    def __init__(self, driver: str, reason: str, detail: str = "") -> None:
        self.driver = driver
        self.reason = reason
        self.detail = detail
        super().__init__(f"driver {driver}: {reason}" + (f" ({detail})" if detail else ""))


class StoreError(GatewayError):
    """The SQLite outbox or registry cannot be opened or written."""


class PublishError(GatewayError):
    """The MQTT broker cannot be reached or refused us (bad credentials, TLS)."""


class DiskFull(StoreError):
    """The storage device is full (SQLITE_FULL, ENOSPC): the outbox sheds and retries, the
    gateway keeps running."""
