"""`presence-gateway init DIR`: write the shipped example config and offer rules into DIR.

The wheel carries the examples (`presence_gateway/data/share/`), so an installer needs no
source checkout: `presence-gateway init /etc/presence-gateway` then edit `gateway.yaml`.
Existing files are never overwritten (exit 2 naming them) unless `--force`. Files are written
0640: a config names secret sources and store identifiers.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources
from pathlib import Path

from presence_gateway.cli.common import Subparsers
from presence_gateway.errors import ConfigError, GatewayError

# shipped name -> name written; the example config names its rules file relative to itself.
FILES = {"gateway.example.yaml": "gateway.yaml", "offers.example.yaml": "offers.yaml"}


def register(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="write the example config and offer rules into a folder",
                       description="Write the shipped example config (gateway.yaml) and offer "
                                   "rules (offers.yaml) into DIR, e.g. /etc/presence-gateway.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--unit-dir", metavar="DIR",
                   help="also write the systemd unit there (e.g. /etc/systemd/system)")
    p.set_defaults(func=init)


def shipped(name: str) -> str:
    """The text of a file the wheel carries in data/share (example configs, AsyncAPI, LICENSE)."""
    return resources.files("presence_gateway").joinpath("data", "share", name).read_text(
        encoding="utf-8")


def unit_text() -> str:
    return resources.files("presence_gateway.firmware_tools").joinpath(
        "presence-gateway.service").read_text(encoding="utf-8")


def init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    outputs = [target / out for out in FILES.values()]
    if args.unit_dir:
        outputs.append(Path(args.unit_dir) / "presence-gateway.service")
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.force:
        raise ConfigError(existing[0], "", None, "exists; nothing written (--force overwrites)")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name, out in FILES.items():
            text = shipped(name)
            if name == "gateway.example.yaml":
                text = text.replace("rules: offers.example.yaml", "rules: offers.yaml")
            path = target / out
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {path}")
        if args.unit_dir:
            unit = Path(args.unit_dir) / "presence-gateway.service"
            unit.parent.mkdir(parents=True, exist_ok=True)
            unit.write_text(unit_text(), encoding="utf-8")
            print(f"wrote {unit} (then: systemctl daemon-reload)")
    except OSError as exc:
        raise GatewayError(f"cannot write {exc.filename or target}: {exc.strerror}") from None
    print(f"next: edit {target / 'gateway.yaml'}, then "
          f"presence-gateway check-config {target / 'gateway.yaml'}")
    return 0
