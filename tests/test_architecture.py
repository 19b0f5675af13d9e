"""House rules that code review would otherwise have to remember: the layers, as a test.

    core      pure: values in, values out (no I/O library, no other layer)
      core/<domain>/   ble, wifi, presence, identity, offers: reach each other only through
                       the shared core modules (model, events, config, privacy, ...)
    drivers   bytes -> sightings; core and errors only
    adapters  storage and MQTT; core and errors only (never runtime or cli)
    runtime   the one builder and the service tasks; never cli
    cli       the commands; anything below it
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "presence_gateway"
IO_LIBS = {"asyncio", "socket", "aiosqlite", "sqlite3", "paho", "bleak", "scapy", "threading",
           "subprocess", "selectors", "select", "ssl", "http", "urllib.request", "aiohttp",
           "psycopg", "asyncpg", "prometheus_client"}
DOMAINS = ("ble", "wifi", "presence", "identity", "offers")
LAYERS = ("core", "adapters", "runtime", "cli", "drivers", "firmware_tools", "central")


def imports_of(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports are not used in this tree)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            if node.module:
                names.add(node.module)
                # `from presence_gateway.core import model` imports the module `model`
                names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PKG or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def offenders(folder: str, forbidden_layers: set[str], *, io: bool = False) -> list[str]:
    out = []
    for path in sources(folder):
        for name in imports_of(path):
            if layer_of(name) in forbidden_layers:
                out.append(f"{path.relative_to(ROOT)} imports {name}")
            if io and any(name == f or name.startswith(f + ".") for f in IO_LIBS):
                out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


def test_core_is_pure() -> None:
    assert not offenders("gateway/core", set(LAYERS) - {"core"}, io=True)


def test_core_domains_meet_only_in_the_shared_model() -> None:
    found = []
    for domain in DOMAINS:
        for path in sources(f"gateway/core/{domain}"):
            for name in imports_of(path):
                parts = name.split(".")
                if parts[:2] == [PKG, "core"] and len(parts) > 2 and parts[2] in DOMAINS \
                        and parts[2] != domain:
                    found.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not found, found


def test_adapters_never_import_runtime_or_cli() -> None:
    assert not offenders("gateway/adapters", {"runtime", "cli", "central", "drivers"})


def test_central_sees_only_core_and_adapters() -> None:
    """The fleet consumer reuses the core's vocabulary and the MQTT/SQLite shells, never the
    gateway's runtime or its commands (cli/central.py wraps it, not the other way round)."""
    assert not offenders("gateway/central", {"runtime", "cli", "drivers", "firmware_tools"})


def test_central_model_is_pure() -> None:
    path = ROOT / "gateway/central/model.py"
    bad = [n for n in imports_of(path) if layer_of(n) not in (None, "core")
           or any(n == f or n.startswith(f + ".") for f in IO_LIBS)]
    assert path.exists() and not bad, bad


def test_runtime_never_imports_cli() -> None:
    assert not offenders("gateway/runtime", {"cli"})


def test_drivers_see_only_core_and_errors() -> None:
    assert not offenders("drivers", {"adapters", "runtime", "cli", "central", "firmware_tools"})


def test_service_imports_no_concrete_driver() -> None:
    names = set().union(*(imports_of(p) for p in sources("gateway/runtime")))
    concrete = [n for n in names if n.startswith(f"{PKG}.drivers.")
                and n.split(".")[2] not in ("base", "registry", "settings")]
    assert not concrete, concrete


def test_every_module_has_a_docstring() -> None:
    missing = [str(p.relative_to(ROOT)) for folder in ("gateway", "drivers")
               for p in sources(folder)
               if p.name != "__init__.py" and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, missing


def test_no_thread_started_outside_allowed_places() -> None:
    """Threads only where a library needs them (aiosqlite's worker is inside aiosqlite)."""
    allowed = {"gateway/cli/monitor.py"}  # the monitor/demo subscriber: paho's own loop_start
    found = []
    for path in sources("gateway") + sources("drivers"):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if ("loop_start(" in text or "threading.Thread(" in text) and rel not in allowed:
            found.append(rel)
    assert not found, found


def test_the_rules_see_the_tree() -> None:
    """A rule over an empty folder passes vacuously: make sure each one has files to judge."""
    for folder in ("gateway/core", "gateway/adapters", "gateway/runtime", "gateway/cli",
                   "gateway/central",
                   "drivers", *(f"gateway/core/{d}" for d in DOMAINS)):
        assert len(sources(folder)) >= 2, folder
