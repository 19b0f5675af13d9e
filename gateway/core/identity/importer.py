"""Identity registry imports: CSV or JSON text -> entries, or every error with file:line column.

Formats (docs/identity.md is the reference):
- CSV with a header. Required columns: `customer_id`, `kind`, `value`, `consent`; optional:
  `segments`, `id`, `expires`. `consent` is space-separated scopes, `segments` is `k=v;k=v`,
  `expires` an RFC 3339 time with offset, or a date (the entry lives through that UTC day).
- JSON: an array of objects with the same keys (or `{"entries": [...]}`), or JSON Lines. In JSON,
  `consent` may be a list and `segments` an object; `expires` may also be Unix seconds.

Invariants:
- Pure: text in, `ImportResult` out; never raises on the content. A file is validated whole:
  the caller imports nothing unless `errors` is empty.
- Each error names the file, the line where the row starts and the column (`ConfigError`, so
  it prints as `customers.csv:3 value: expected uuid/major/minor`).
- Raw beacon ids and MACs are hashed here (`parse_material`); the returned entries hold no raw
  identifier, only hashes and the secrets that must stay keys.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from presence_gateway.core.identity.index import (
    SCOPES,
    Entry,
    EntryKind,
    Hasher,
    Invalid,
    entry_id_for,
    parse_material,
)
from presence_gateway.errors import ConfigError

REQUIRED = ("customer_id", "kind", "value", "consent")
OPTIONAL = ("segments", "id", "expires")
_CUSTOMER = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
_ENTRY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_SEGMENT_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class ImportResult:
    entries: tuple[Entry, ...]
    errors: tuple[ConfigError, ...]


# -- field parsers (each: value -> parsed | Invalid) -------------------------------------------


def parse_consent(value: object) -> frozenset[str] | Invalid:
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        return Invalid("expected space-separated scopes")
    unknown = sorted(set(items) - SCOPES)
    if unknown:
        return Invalid(f"unknown scope {unknown[0]!r} (expected: {', '.join(sorted(SCOPES))})")
    return frozenset(items)


def parse_segments(value: object) -> Mapping[str, str] | Invalid:
    pairs: list[tuple[str, object]] = []
    if value is None or value == "":
        return MappingProxyType({})
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, str):
        for part in value.split(";"):
            if not part.strip():
                continue
            key, eq, val = part.partition("=")
            if not eq:
                return Invalid(f"expected key=value pairs separated by ';', got {part.strip()!r}")
            pairs.append((key.strip(), val.strip()))
    else:
        return Invalid("expected key=value pairs separated by ';'")
    out: dict[str, str] = {}
    for name, item in pairs:
        if not _SEGMENT_KEY.fullmatch(name):
            return Invalid(f"bad segment key {name!r} (letters, digits, _ . - only)")
        if name in out:
            return Invalid(f"segment {name!r} given twice")
        if isinstance(item, bool) or not isinstance(item, str | int | float) or not str(item):
            return Invalid(f"segment {name!r} needs a non-empty value")
        out[name] = str(item)
    return MappingProxyType(out)


def parse_expires(value: object) -> float | Invalid | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return Invalid("expected an RFC 3339 time or a date")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1)).timestamp()
        t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return Invalid(f"expected an RFC 3339 time or a date, got {text!r}")
    if t.tzinfo is None:
        return Invalid("the time needs an offset (e.g. Z or +01:00)")
    return t.timestamp()


# -- one row ---------------------------------------------------------------------------------


def entry_from_fields(fields: Mapping[str, Any], hasher: Hasher,
                      err: Any) -> Entry | None:
    """Build an entry from row fields; `err(column, message)` records each problem."""
    ok = True
    customer = fields.get("customer_id")
    if not isinstance(customer, str) or not _CUSTOMER.fullmatch(customer.strip()):
        err("customer_id", "expected an opaque id of 1..128 printable characters, no spaces")
        ok = False
    kind = fields.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else ""
    value = fields.get("value")
    material: str | Invalid = Invalid("expected a text value")
    if isinstance(value, str) and value.strip():
        material = parse_material(kind, value, hasher)
    if isinstance(material, Invalid):
        col = "value" if kind in EntryKind._value2member_map_ else "kind"
        err(col, material.reason)
        ok = False
    parsed: dict[str, Any] = {}
    for col, parse in (("consent", parse_consent), ("segments", parse_segments),
                       ("expires", parse_expires)):
        v = parse(fields.get(col, "" if col != "consent" else None))
        if isinstance(v, Invalid):
            err(col, v.reason)
            ok = False
        parsed[col] = v
    entry_id = fields.get("id") or None
    if entry_id is not None and not (isinstance(entry_id, str)
                                     and _ENTRY_ID.fullmatch(entry_id)):
        err("id", "expected 1..64 letters, digits, _ . : -")
        ok = False
    if not ok or not isinstance(material, str) or not isinstance(customer, str):
        return None
    return Entry(
        entry_id=entry_id or entry_id_for(kind, material, hasher),
        customer_id=customer.strip(), kind=EntryKind(kind), material=material,
        consent=parsed["consent"], segments=parsed["segments"], expires=parsed["expires"],
    )


# -- files -----------------------------------------------------------------------------------


def parse_import(text: str, filename: str, hasher: Hasher) -> ImportResult:
    """CSV or JSON by content: JSON when the first non-blank character is '[' or '{'."""
    head = text.lstrip("\ufeff \t\r\n")[:1]
    rows = _json_rows(text, filename) if head in ("[", "{") else _csv_rows(text, filename)
    entries: list[Entry] = []
    errors: list[ConfigError] = []
    seen: dict[str, int] = {}
    for line, fields in rows:
        if isinstance(fields, ConfigError):
            errors.append(fields)
            continue

        def err(col: str, msg: str, line: int = line) -> None:
            errors.append(ConfigError(filename, col, line, msg))

        entry = entry_from_fields(fields, hasher, err)
        if entry is None:
            continue
        first = seen.setdefault(entry.entry_id, line)
        if first != line:
            err("value", f"the same identity is already on line {first}")
            continue
        entries.append(entry)
    if not entries and not errors:
        errors.append(ConfigError(filename, "", None, "no entries"))
    return ImportResult(tuple(entries), tuple(errors))


Row = tuple[int, "Mapping[str, Any] | ConfigError"]


def _csv_rows(text: str, filename: str) -> Iterator[Row]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error):
        yield 1, ConfigError(filename, "", 1, "expected a CSV header line")
        return
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        what = (f"missing column {missing[0]}" if missing else
                f"unknown column {unknown[0]!r}" if unknown else "a column is named twice")
        yield 1, ConfigError(filename, "", 1, f"{what} (columns: {', '.join(REQUIRED)}, "
                                              f"optional {', '.join(OPTIONAL)})")
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, ConfigError(filename, "", start, f"bad CSV: {exc}")
            return
        if any(cell.strip() for cell in row):
            if len(row) != len(header):
                yield start, ConfigError(filename, "", start,
                                         f"expected {len(header)} cells, got {len(row)}")
            else:
                yield start, dict(zip(header, row, strict=True))
        start = reader.line_num + 1


def _json_rows(text: str, filename: str) -> Iterator[Row]:
    """Walk the array element by element so each row knows the line it starts on."""
    dec = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):  # maybe JSON Lines
            yield from _jsonl_rows(text, filename)
            return
        yield exc.lineno, ConfigError(filename, "", exc.lineno, f"not valid JSON: {exc.msg}")
        return
    pos = 0
    if isinstance(whole, dict):
        m = re.search(r'"entries"\s*:\s*\[', text)
        if set(whole) != {"entries"} or not isinstance(whole["entries"], list) or m is None:
            yield 1, ConfigError(filename, "", 1, 'expected an array or {"entries": [...]}')
            return
        pos = m.end() - 1
    elif not isinstance(whole, list):
        yield 1, ConfigError(filename, "", 1, "expected an array of entries")
        return
    else:
        pos = text.index("[")
    pos += 1
    while True:
        pos = _skip(text, pos, ",")
        if pos >= len(text) or text[pos] == "]":
            return
        item, end = dec.raw_decode(text, pos)
        yield from _json_item(item, text.count("\n", 0, pos) + 1, filename)
        pos = end


def _jsonl_rows(text: str, filename: str) -> Iterator[Row]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, ConfigError(filename, "", n, f"not valid JSON: {exc.msg}")
            continue
        yield from _json_item(item, n, filename)


def _json_item(item: object, line: int, filename: str) -> Iterator[Row]:
    if not isinstance(item, dict):
        yield line, ConfigError(filename, "", line, "expected an object")
        return
    unknown = sorted(set(item) - set(REQUIRED + OPTIONAL))
    if unknown:
        yield line, ConfigError(filename, unknown[0], line, "unknown key")
        return
    yield line, item


def _skip(text: str, pos: int, seps: str) -> int:
    while pos < len(text) and (text[pos].isspace() or text[pos] in seps):
        pos += 1
    return pos
