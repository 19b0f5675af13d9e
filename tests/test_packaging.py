"""The wheel: one import namespace, the shipped files inside, and a working console script.

Builds the wheel offline (no build isolation), installs it without dependencies into a fresh
folder and runs its `presence-gateway` from there with this environment's dependencies, so
nothing of the source tree can stand in for a missing file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"presence_gateway": ROOT / "gateway", "presence_gateway.drivers": ROOT / "drivers",
           "presence_gateway.firmware_tools": ROOT / "firmware_tools"}


def test_package_list_matches_the_folders() -> None:
    """Every code package (a folder with __init__.py) and every data folder holding files is
    listed: setuptools warns about (and will refuse) a folder of package data that is not."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = set()
    for name, folder in SOURCES.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            if "__pycache__" not in rel and "data" not in rel:
                found.add(".".join((name, *rel)))
    data = SOURCES["presence_gateway"] / "data"
    for sub in (data, *(d for d in data.rglob("*") if d.is_dir())):
        if "__pycache__" not in sub.parts and any(f.is_file() for f in sub.iterdir()):
            found.add(".".join(("presence_gateway", *sub.relative_to(SOURCES["presence_gateway"])
                                .parts)))
    assert listed == found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    if build.returncode != 0 and "setuptools" in build.stderr:
        pytest.skip(f"cannot build offline here: {build.stderr.strip()[-300:]}")
    assert build.returncode == 0, build.stderr
    [whl] = out.glob("presence_gateway-*.whl")
    return whl


def test_the_wheel_carries_configs_contract_license_and_unit(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("gateway.example.yaml", "offers.example.yaml", "asyncapi.yaml", "LICENSE"):
        assert f"presence_gateway/data/share/{shipped}" in names
    assert "presence_gateway/firmware_tools/presence-gateway.service" in names
    for page in ("app.js", "login.html", "store.html", "uPlot.iife.min.js", "LICENSE.uPlot"):
        assert f"presence_gateway/data/web/{page}" in names  # the dashboard works offline
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # pure Python: no extension module, not even one an earlier compiled build (make wheel,
    # tests/test_compiled.py, same checkout) left in setuptools' build/lib
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    tops = {n.split("/", 1)[0] for n in names}
    assert tops <= {"presence_gateway", *(t for t in tops if t.endswith(".dist-info"))}
    shipped = zipfile.ZipFile(wheel).read("presence_gateway/data/share/asyncapi.yaml")
    assert shipped == (ROOT / "docs" / "asyncapi.yaml").read_bytes()


def test_the_installed_wheel_runs_init_and_check_config(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "PG_SECRET": "x" * 32,
           "MQTT_PASSWORD": "pw", "PG_SYNC_KEY": "k" * 20, "PG_COMMAND_KEY": "c" * 20}
    script = target / "bin" / "presence-gateway"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, cwd="/", env=env, timeout=120)

    where = subprocess.run([sys.executable, "-c", "import presence_gateway; "
                            "print(presence_gateway.__file__)"],
                           capture_output=True, text=True, cwd="/", env=env, check=True)
    assert where.stdout.startswith(str(target)), "the installed copy, not the checkout"
    assert cli("--version").stdout.startswith("presence-gateway ")
    etc = tmp_path / "etc"
    assert cli("init", str(etc)).returncode == 0
    checked = cli("check-config", str(etc / "gateway.yaml"))
    assert checked.returncode == 0, checked.stderr
    assert "5 offer rule(s)" in checked.stdout
