"""YAML with line numbers, and typed readers that report `file:line key.path: message`.

Every YAML file the gateway reads (config, offer rules, identity imports) goes through here, so
every error a person sees has the same shape and names the file, the key path and the line.
Readers collect errors instead of raising at the first one: a file is validated whole, and
nothing of it is used unless all of it is valid.

Pure: no I/O beyond parsing a string the caller read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from presence_gateway.errors import ConfigError, ConfigErrors

T = TypeVar("T")
_MISSING: Any = object()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float | None:
    """'90s', '5m', '1.5h', '2d', or a bare number of seconds -> seconds; None if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2) or "s"]
    return None


# Plain data only: the tags YAML's core schema resolves by itself. An explicit other tag
# (`!!python/object:...`, `!!binary`, `!!set`, `!custom`) is refused with its line, never
# constructed.
_TAGS = frozenset("tag:yaml.org,2002:" + t for t in
                  ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))
# Aliases let a few lines expand into billions of values ("billion laughs"); a real config or
# rules file has a few thousand nodes at most.
MAX_NODES = 200_000


class _Refused(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _Plain:
    """Turns a composed node tree into dicts, lists and scalars, recording each key's line."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines
        self.budget = MAX_NODES
        # The safe constructor resolves one scalar node (int, float, bool, null, timestamp,
        # str) exactly as yaml.safe_load would, without re-serialising it.
        self.scalars = yaml.constructor.SafeConstructor()

    def value(self, node: yaml.Node, path: str) -> Any:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        self.budget -= 1
        if self.budget < 0:
            raise _Refused(line, f"more than {MAX_NODES} values (aliases expanding?)")
        if node.tag not in _TAGS:
            raise _Refused(line, f"the YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')!r}"
                                 " is not allowed (plain values, lists and mappings only)")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode) or knode.tag not in _TAGS:
                    raise _Refused(knode.start_mark.line + 1,
                                   "a key must be a plain value (not a list, mapping or tag)")
                key = str(self.scalar(knode))
                sub = f"{path}.{key}" if path else key
                self.lines[sub] = knode.start_mark.line + 1
                out[key] = self.value(vnode, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v, f"{path}[{i}]") for i, v in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as exc:
            raise _Refused(node.start_mark.line + 1, f"cannot read this value: {exc}") from None


def load_yaml(text: str, filename: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML text into plain values plus a map from key path to line number.

    Raises only ConfigError, whatever the text: a tag, a recursive alias or a value YAML cannot
    construct names its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(filename, "", line, f"not valid YAML: {exc.problem}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigError(filename, "", None, f"not valid YAML: {exc}") from None
    lines: dict[str, int] = {}
    if node is None:
        return {}, lines
    try:
        return _Plain(lines).value(node, ""), lines
    except _Refused as exc:
        raise ConfigError(filename, "", exc.line, exc.message) from None
    except RecursionError:
        raise ConfigError(filename, "", None, "not valid YAML: nested too deeply (a recursive"
                          " alias?)") from None


class Reader:
    """Typed access to one YAML document; errors accumulate in `errors`."""

    def __init__(self, filename: str, data: Any, lines: dict[str, int], *,
                 base_dir: str | None = None) -> None:
        self.filename = filename
        self.data = data
        self.lines = lines
        # The folder of the file being read: relative paths in it mean "beside this file", so a
        # config in /etc/presence-gateway works from any working directory (systemd's is /).
        self.base_dir = base_dir
        self.errors: list[ConfigError] = []

    def file_path(self, value: str) -> str:
        """A path written in the file, resolved against the file's folder when relative."""
        if self.base_dir is None or not value or Path(value).is_absolute():
            return value
        return str(Path(self.base_dir) / value)

    # -- plumbing -------------------------------------------------------------------------
    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else ""
        return self.lines.get("")

    def error(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(self.filename, path, self.line(path), message))

    def raw(self, path: str, default: Any = _MISSING) -> Any:
        cur = self.data
        for part in _split(path):
            if isinstance(part, int):
                if not isinstance(cur, list) or part >= len(cur):
                    return default
                cur = cur[part]
            else:
                if not isinstance(cur, dict) or part not in cur:
                    return default
                cur = cur[part]
        return cur

    def has(self, path: str) -> bool:
        return self.raw(path) is not _MISSING

    def check(self) -> None:
        if self.errors:
            self.errors.sort(key=lambda e: e.line or 0)
            raise ConfigErrors(list(self.errors)) if len(self.errors) > 1 else self.errors[0]

    def known_keys(self, path: str, allowed: set[str] | frozenset[str]) -> None:
        """Report keys nobody reads: a typo must not silently fall back to a default."""
        value = self.raw(path, {}) if path else self.data
        if value is None:
            return
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_show(value)}")
            return
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else key
                self.error(sub, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def _get(self, path: str, default: Any, required: bool) -> Any:
        value = self.raw(path)
        if value is _MISSING or value is None:
            if required:
                self.error(path, "is required")
            return _MISSING
        return value

    # -- typed readers --------------------------------------------------------------------
    def str_(self, path: str, default: str = "", *, required: bool = False,
             pattern: str | None = None, choices: tuple[str, ...] | None = None) -> str:
        value = self._get(path, default, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            self.error(path, f"expected a non-empty string, got {_show(value)}")
            return default
        if choices is not None and value not in choices:
            self.error(path, f"expected one of {', '.join(choices)}, got {_show(value)}")
            return default
        if pattern is not None and not re.fullmatch(pattern, value):
            self.error(path, f"expected a value matching {pattern}, got {_show(value)}")
            return default
        return value

    def opt_str(self, path: str) -> str | None:
        value = self.raw(path, None)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_show(value)}")
            return None
        return value

    def int_(self, path: str, default: int, lo: int | None = None, hi: int | None = None,
             *, required: bool = False) -> int:
        value = self._get(path, default, required)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or (
            lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(path, f"expected an integer {_range(lo, hi)}, got {_show(value)}")
            return default
        return value

    def float_(self, path: str, default: float, lo: float | None = None,
               hi: float | None = None) -> float:
        value = self._get(path, default, False)
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or (
            lo is not None and value < lo) or (hi is not None and value > hi):
            self.error(path, f"expected a number {_range(lo, hi)}, got {_show(value)}")
            return default
        return float(value)

    def bool_(self, path: str, default: bool) -> bool:
        value = self._get(path, default, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.error(path, f"expected true or false, got {_show(value)}")
            return default
        return value

    def duration(self, path: str, default: float, *, minimum: float = 0.0,
                 required: bool = False) -> float:
        value = self._get(path, default, required)
        if value is _MISSING:
            return default
        seconds = parse_duration(value)
        if seconds is None or seconds < minimum:
            self.error(path, f"expected a duration such as 30s, 5m, 2h (at least {minimum:g}s),"
                             f" got {_show(value)}")
            return default
        return seconds

    def list_(self, path: str) -> list[Any]:
        value = self.raw(path, None)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_show(value)}")
            return []
        return value

    def mapping(self, path: str) -> dict[str, Any]:
        value = self.raw(path, None)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_show(value)}")
            return {}
        return value

    def each(self, path: str) -> Iterator[str]:
        """Paths of the items of a list, e.g. 'zones[0]', 'zones[1]'."""
        for i, _ in enumerate(self.list_(path)):
            yield f"{path}[{i}]"

    def parsed(self, path: str, default: T, parse: Callable[[Any], T | None],
               expected: str) -> T:
        """Read a value through a parser that returns None when the value is wrong."""
        value = self.raw(path, None)
        if value is None:
            return default
        out = parse(value)
        if out is None:
            self.error(path, f"expected {expected}, got {_show(value)}")
            return default
        return out


def read_secret(r: Reader, key: str, spec: str, env: Mapping[str, str]) -> str | None:
    """'env:NAME' or 'file:PATH' -> the secret text (never the secret written in the YAML);
    a missing variable or unreadable file is an error naming the key."""
    kind, _, ref = spec.partition(":")
    if kind == "env":
        if ref not in env:
            r.error(key, f"environment variable {ref} is not set")
            return None
        return env[ref]
    if kind == "file":
        try:
            return Path(r.file_path(ref)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            r.error(key, f"cannot read {ref}: {exc.strerror}")
            return None
    r.error(key, f'expected "env:NAME" or "file:PATH", got "{spec}"')
    return None


def _split(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.split("."):
        if not piece:
            continue
        m = re.fullmatch(r"([^\[]*)((?:\[\d+\])*)", piece)
        if m is None:
            parts.append(piece)
            continue
        if m.group(1):
            parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return parts


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return ""


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)
