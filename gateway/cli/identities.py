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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from presence_gateway.adapters.identity_store import EntryInfo, Registry
from presence_gateway.cli.common import Subparsers
from presence_gateway.core.config import GatewayConfig, load_config
from presence_gateway.core.identity.importer import parse_import
from presence_gateway.core.identity.index import Entry, EntryKind
from presence_gateway.core.privacy import Pseudonymizer
from presence_gateway.errors import ConfigError, GatewayError


def register(sub: Subparsers) -> None:
    # -c/--db are accepted before or after the action: SUPPRESS keeps the later parser from
    # overwriting a value the earlier one read.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="gateway config (privacy secret, storage path)")
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                        help="SQLite file to use instead of storage.path")
    p = sub.add_parser("identities", parents=[common],
                       help="manage the consented identity registry",
                       description="Manage the consented identity registry.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    imp = actions.add_parser("import", parents=[common], help="import entries from CSV or JSON")
    imp.add_argument("file")
    ls = actions.add_parser("list", parents=[common], help="list entries (never their secrets)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    rm = actions.add_parser("remove", parents=[common], help="remove one entry")
    rm.add_argument("entry_id")
    fg = actions.add_parser("forget", parents=[common],
                            help="erase a customer and every stored trace (right to erasure)")
    fg.add_argument("customer_id")
    pg = actions.add_parser("purge", parents=[common],
                            help="drop visit history past privacy.retention_days and expired"
                                 " entries")
    pg.add_argument("--days", type=int, default=None, help="override the retention days")
    p.set_defaults(func=identities_command)


def identities_command(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    db = getattr(args, "db", None) or cfg.storage.path
    if args.action == "import":
        entries = _prepare_import(args.file, cfg)
        return asyncio.run(_store_import(entries, cfg, db))
    if not Path(db).exists():
        raise GatewayError(f"no database at {db} (give --db PATH or -c FILE)")
    return asyncio.run(_run(args, cfg, db))


async def _run(args: argparse.Namespace, cfg: GatewayConfig, db: str) -> int:
    async with await Registry.open(db) as reg:
        if args.action == "list":
            # A registry hashed under another secret lists fine but would never match: say so
            # (exit 1) instead of listing entries the gateway cannot use. Without a stable
            # secret (no -c) there is nothing to check against.
            if cfg.privacy.secret_source != "random":
                await reg.check_key(Pseudonymizer(cfg.privacy.secret).stable_hash)
            _print_list(await reg.list_entries(), as_json=args.json)
            return 0
        if args.action == "remove":
            if await reg.remove(args.entry_id):
                print(f"removed {args.entry_id}")
                return 0
            raise GatewayError(f"no entry {args.entry_id}")
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


def _prepare_import(path: str, cfg: GatewayConfig) -> list[Entry]:
    """Read and validate the whole file (no I/O on the database yet)."""
    if cfg.privacy.secret_source == "random":
        raise ConfigError(cfg.source, "privacy.secret", None,
                          "identities import needs a stable secret (env:NAME or file:PATH in"
                          " the config given with -c): registry ids are stored as keyed"
                          " hashes, and a random per-process secret would never match them"
                          " again")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", None, f"cannot read file: {exc}") from None
    hasher = Pseudonymizer(cfg.privacy.secret).stable_hash
    result = parse_import(text, Path(path).name, hasher)
    if result.errors:
        for e in result.errors:
            print(str(e), file=sys.stderr)
        raise ConfigError(path, "", None, f"nothing imported: {len(result.errors)} problem(s)")
    for entry in result.entries:
        if entry.kind is EntryKind.APP_TOKEN and "/" not in entry.material \
                and not cfg.identity.app_uuid:
            print(f"warning: {entry.entry_id} ({entry.customer_id}) will not match until"
                  " identity.app_token.uuid is set in the config", file=sys.stderr)
    return list(result.entries)


async def _store_import(entries: list[Entry], cfg: GatewayConfig, db: str) -> int:
    hasher = Pseudonymizer(cfg.privacy.secret).stable_hash
    async with await Registry.open(db) as reg:
        n = await reg.import_entries(entries, hasher, time.time())
    print(f"imported {n} entries into {db}")
    return 0


def _valid_through(expires: float | None) -> str:
    """The last day an entry is valid, as imported: a date `2027-12-31` is stored as the end of
    that day (2028-01-01T00:00Z, exclusive) and listed as 2027-12-31; other times in full."""
    if expires is None:
        return "-"
    end = datetime.fromtimestamp(expires, UTC)
    if (end.hour, end.minute, end.second, end.microsecond) == (0, 0, 0, 0):
        return (end - timedelta(days=1)).strftime("%Y-%m-%d")
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_list(rows: Sequence[EntryInfo], *, as_json: bool) -> None:
    if as_json:
        for e in rows:
            print(json.dumps({"entry_id": e.entry_id, "customer_id": e.customer_id,
                              "kind": e.kind, "consent": list(e.consent),
                              "segments": e.segments, "expires": e.expires,
                              "source": e.source}))
        return
    print(f"{'ENTRY':<18} {'CUSTOMER':<20} {'KIND':<14} {'CONSENT':<32} {'VALID THRU':<10} "
          "SEGMENTS")
    for e in rows:
        expires = _valid_through(e.expires)
        segments = ";".join(f"{k}={v}" for k, v in sorted(e.segments.items())) or "-"
        print(f"{e.entry_id:<18} {e.customer_id:<20} {e.kind:<14} {' '.join(e.consent):<32} "
              f"{expires:<10} {segments}")
    print(f"{len(rows)} entries")
