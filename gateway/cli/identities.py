"""`presence-gateway identities import FILE | list | remove ENTRY_ID | forget CUSTOMER | purge`.

Options (before or after the subcommand): `-c FILE` (gateway config: privacy secret, storage
path, identity section), `--db PATH` (SQLite file; overrides storage.path).

Invariants:
- `import` validates the whole file first and imports nothing when any row is wrong (exit 2,
  one `file:line column: message` per problem). It needs a stable privacy secret: with
  `privacy.secret: random` the stored hashes could never match after a restart, so it refuses.
- `list` never prints material (hashes or secrets); nothing here logs a secret or a raw id.
- Exit codes: 0 ok, 1 runtime failure (store) or entry not found, 2 bad usage/config/file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from presence_gateway.adapters.identity_store import EntryInfo, Registry
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.identity import config as identity_config
from presence_gateway.core.identity.config import IdentitySettings
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import Entry, EntryKind
from presence_gateway.core.privacy import Pseudonymizer
from presence_gateway.core.yamlread import Reader, load_yaml
from presence_gateway.errors import GatewayError


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="gateway config (privacy secret, storage path)")
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help="SQLite file to use instead of storage.path")
    p = argparse.ArgumentParser(prog="presence-gateway identities", parents=[common],
                                description="Manage the consented identity registry.")
    sub = p.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", parents=[common], help="import entries from CSV or JSON")
    imp.add_argument("file")
    ls = sub.add_parser("list", parents=[common], help="list entries (never their secrets)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    rm = sub.add_parser("remove", parents=[common], help="remove one entry")
    rm.add_argument("entry_id")
    fg = sub.add_parser("forget", parents=[common],
                        help="erase a customer and every stored trace (right to erasure)")
    fg.add_argument("customer_id")
    pg = sub.add_parser("purge", parents=[common],
                        help="drop visit history past privacy.retention_days and expired entries")
    pg.add_argument("--days", type=int, default=None, help="override the retention days")
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    try:
        cfg = load_config(getattr(args, "config", None))
        db = getattr(args, "db", None) or cfg.storage.path
        if args.action == "import":
            prepared = _prepare_import(args.file, cfg)
            if isinstance(prepared, int):
                return prepared
            return asyncio.run(_store_import(prepared, cfg, db))
        if not Path(db).exists():
            print(f"error: no database at {db} (give --db PATH or -c FILE)", file=sys.stderr)
            return 1
        return asyncio.run(_run(args, cfg, db))
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


async def _run(args: argparse.Namespace, cfg: GatewayConfig, db: str) -> int:
    async with await Registry.open(db) as reg:
        if args.action == "list":
            _print_list(await reg.list_entries(), as_json=args.json)
            return 0
        if args.action == "remove":
            if await reg.remove(args.entry_id):
                print(f"removed {args.entry_id}")
                return 0
            print(f"error: no entry {args.entry_id}", file=sys.stderr)
            return 1
        if args.action == "forget":
            erased = await reg.forget(args.customer_id)
            other = ", ".join(f"{n} in {t}" for t, n in sorted(erased.other_rows.items()))
            print(f"forgot {args.customer_id}: {erased.entries} entries, {erased.visits} visits"
                  + (f", {other}" if other else ""))
            return 0
        days = args.days if args.days is not None else cfg.privacy.retention_days
        purged = await reg.purge(time.time(), days)
        print(f"purged {purged.visits} visits older than {days} days,"
              f" {purged.expired_entries} expired entries")
        return 0


def _prepare_import(path: str, cfg: GatewayConfig) -> list[Entry] | int:
    """Read and validate the whole file (no I/O on the DB yet); an int is an exit code."""
    if cfg.privacy.secret_source == "random":
        print("error: identities import needs a stable privacy.secret (env:NAME or file:PATH in"
              " the config given with -c): registry ids are stored as keyed hashes, and a random"
              " per-process secret would never match them again", file=sys.stderr)
        return 2
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    hasher = Pseudonymizer(cfg.privacy.secret).stable_hash
    result = parse_import(text, Path(path).name, hasher)
    if result.errors:
        for e in result.errors:
            print(str(e), file=sys.stderr)
        print(f"nothing imported: {len(result.errors)} problem(s) in {path}", file=sys.stderr)
        return 2
    settings = identity_settings(cfg)
    for entry in result.entries:
        if entry.kind is EntryKind.APP_TOKEN and "/" not in entry.material \
                and not settings.app_uuid:
            print(f"warning: {entry.entry_id} ({entry.customer_id}) will not match until"
                  " identity.app_token.uuid is set in the config", file=sys.stderr)
    return list(result.entries)


async def _store_import(entries: list[Entry], cfg: GatewayConfig, db: str) -> int:
    hasher = Pseudonymizer(cfg.privacy.secret).stable_hash
    async with await Registry.open(db) as reg:
        n = await reg.import_entries(entries, hasher, time.time())
    print(f"imported {n} entries into {db}")
    return 0


def identity_settings(cfg: GatewayConfig) -> IdentitySettings:
    """The config's identity section (read here until config.py carries it itself)."""
    wired = getattr(cfg, "identity", None)
    if isinstance(wired, IdentitySettings):
        return wired
    if cfg.source == "<defaults>":
        return IdentitySettings()
    data, lines = load_yaml(Path(cfg.source).read_text(encoding="utf-8"), cfg.source)
    r = Reader(Path(cfg.source).name, data, lines)
    settings = identity_config.read(r, "identity")
    r.check()
    return settings


def _print_list(rows: Sequence[EntryInfo], *, as_json: bool) -> None:
    if as_json:
        for e in rows:
            print(json.dumps({"entry_id": e.entry_id, "customer_id": e.customer_id,
                              "kind": e.kind, "consent": list(e.consent),
                              "segments": e.segments, "expires": e.expires,
                              "source": e.source}))
        return
    print(f"{'ENTRY':<18} {'CUSTOMER':<20} {'KIND':<14} {'CONSENT':<32} {'EXPIRES':<10} "
          "SEGMENTS")
    for e in rows:
        expires = (datetime.fromtimestamp(e.expires, UTC).strftime("%Y-%m-%d")
                   if e.expires is not None else "-")
        segments = ";".join(f"{k}={v}" for k, v in sorted(e.segments.items())) or "-"
        print(f"{e.entry_id:<18} {e.customer_id:<20} {e.kind:<14} {' '.join(e.consent):<32} "
              f"{expires:<10} {segments}")
    print(f"{len(rows)} entries")
