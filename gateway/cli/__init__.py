"""The `presence-gateway` command line: one module per command, one error/exit path."""

from presence_gateway.cli.main import main

__all__ = ["main"]
