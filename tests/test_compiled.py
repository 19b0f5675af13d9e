"""The compiled build (gateway/build.py) is the same gateway.

Built as a fleet builds it (setup.py with PRESENCE_GATEWAY_COMPILE=1, installed with pip into
a directory of its own, bench/compiled.py), then:
- every listed module is an extension module, its .py beside it, and the gateway says so;
- the real Wi-Fi day replays to the same events, byte for byte but the random event ids;
- a restart keeps the day across builds: a snapshot written by the pure-Python gateway
  thaws in the compiled one and the other way round (an upgrade mid-day);
- the core tests pass against it (those marked pure_python skipped: they subclass or patch
  a compiled class).
The pure-Python build is the one the rest of the suite runs. Skipped, with the reason, where
the machine cannot compile (no mypy, C compiler or Python headers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.compiled import ROOT, build, missing
from presence_gateway.build import COMPILED, module_name
from tests.integration.test_continuity import summary

DAY = (ROOT.parent / "shared" / "data" / "captures" / "wifi" / "brno_sc6-61"
       / "position_1_sc6-61_2023-02-28_anonymized.pcap")

pytestmark = pytest.mark.skipif(missing() is not None, reason=f"cannot compile: {missing()}")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield build(tmp_path_factory.mktemp("compiled"))


def python(site: Path | None, *args: str, timeout: float = 300) -> str:
    """Run this venv's Python with `site` (a build) in front of the installed package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site) if site else "", str(ROOT)) if p)
    env["PG_SECRET"] = "a-test-secret-of-32-characters.."
    proc = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_every_listed_module_is_compiled_with_its_source_beside_it(compiled: Path) -> None:
    for path in COMPILED:
        py = compiled / "presence_gateway" / path
        assert py.exists(), f"{path}: the source ships too"
        assert list(py.parent.glob(py.stem + ".*.so")), f"{path}: no extension module"
    where = python(compiled, "-c", "import importlib; print('\\n'.join(importlib.import_module("
                   f"m).__file__ for m in {[module_name(p) for p in COMPILED]!r}))")
    assert all(line.endswith(".so") for line in where.split()), where
    assert f"compiled with mypyc ({len(COMPILED)} modules)" in python(
        compiled, "-m", "presence_gateway", "--version")
    assert "pure Python" in python(None, "-m", "presence_gateway", "--version")
    # doctor: the compiled build is what a fleet should run (ok); pure Python warns
    doctor = "from presence_gateway.cli.doctor import check_code; print(*check_code())"
    assert python(compiled, "-c", doctor).startswith(
        f"ok code compiled with mypyc ({len(COMPILED)} modules)")
    assert python(None, "-c", doctor).startswith("warn code pure Python")


def events_of(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        event.pop("id")  # a random UUIDv7 per event
        out.append(event)
    return out


@pytest.mark.skipif(not DAY.exists(), reason=f"{DAY} is absent (../shared)")
def test_the_real_day_replays_to_the_same_events(compiled: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("privacy: {secret: env:PG_SECRET}\n")
    runs = {}
    for name, site in (("pure", None), ("compiled", compiled)):
        out = tmp_path / f"{name}.jsonl"
        python(site, "-m", "presence_gateway", "replay", str(DAY), "-c", str(cfg), "--no-mqtt",
               "--db", str(tmp_path / f"{name}.db"), "--events-out", str(out))
        runs[name] = events_of(out)
    assert len(runs["pure"]) > 3_000
    assert runs["compiled"] == runs["pure"]


@pytest.mark.parametrize("first,second", [("pure", "compiled"), ("compiled", "pure")])
def test_a_restart_keeps_the_day_across_builds(compiled: Path, tmp_path: Path, mosquitto: Any,
                                               first: str, second: str) -> None:
    broker = mosquitto()
    site = {"pure": None, "compiled": compiled}

    def part(name: str, build_name: str, db: Path) -> dict[str, Any]:
        db.mkdir(exist_ok=True)
        out = tmp_path / f"{name}-{build_name}.json"
        python(site[build_name], "-m", "tests.compiled_restart", name, str(db), broker.url,
               str(out))
        result: dict[str, Any] = orjson.loads(out.read_bytes())
        return result

    whole = part("whole", second, tmp_path / "whole")
    a = part("first", first, tmp_path / "split")
    b = part("second", second, tmp_path / "split")
    assert ("pure" in a["build"]) == (first == "pure") and ("pure" in b["build"]) != (
        first == "pure"), (a["build"], b["build"])
    split, one = summary(a["events"] + b["events"]), summary(whole["events"])
    assert one[0], "the captures have visits"
    assert split[0] == one[0], "each visit started once, as in one run"
    assert split[1] == one[1], "and ended once, with the same ids"
    assert split[2] == one[2], "the day's totals are the uninterrupted run's"


def test_the_core_tests_pass_compiled(compiled: Path) -> None:
    out = python(compiled, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/core",
                 "tests/integration/test_continuity.py", timeout=600)
    assert " passed" in out and "failed" not in out, out[-2000:]
