"""House rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {"asyncio", "socket", "aiosqlite", "sqlite3", "paho", "bleak", "scapy",
                     "threading", "subprocess", "selectors", "select", "ssl", "gateway.service",
                     "gateway.store", "gateway.publisher", "drivers"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_is_pure() -> None:
    offenders = []
    for path in sorted((ROOT / "gateway" / "core").glob("*.py")):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE):
                offenders.append(f"{path.name} imports {name}")
    assert not offenders, offenders


def test_service_imports_no_concrete_driver() -> None:
    names = imports_of(ROOT / "gateway" / "service.py")
    assert not [n for n in names if n.startswith("drivers.") and n != "drivers.base"]


def test_no_thread_started_outside_allowed_places() -> None:
    """Threads only where a library needs them (aiosqlite's worker is inside aiosqlite)."""
    allowed = {"gateway/monitor.py"}  # the monitor/demo subscriber: paho's own loop_start
    found = []
    for path in list((ROOT / "gateway").rglob("*.py")) + list((ROOT / "drivers").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if ("loop_start(" in text or "threading.Thread(" in text) and rel not in allowed:
            found.append(rel)
    assert not found, found
