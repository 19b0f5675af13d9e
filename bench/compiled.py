"""The compiled build (gateway/build.py), installed into a directory of its own.

    python -m bench.compiled DIR     # then PYTHONPATH=DIR python -m presence_gateway ...

Builds it the way a fleet would (`make wheel`: setup.py with PRESENCE_GATEWAY_COMPILE=1)
and installs it with `pip --target`, without dependencies: the directory holds only
`presence_gateway` (each compiled module's extension beside its .py) and mypyc's shared
library, to put in front of this venv's packages. Used by the benchmarks (a compiled tree
paired with this one) and tests/test_compiled.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = "compiled build"  # its name among the trees a benchmark pairs


def missing() -> str | None:
    """Why this machine cannot build it, or None."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy (mypyc) is not installed"
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").exists():
        return f"the Python headers are missing ({include}/Python.h)"
    if not any(Path(d, cc).exists() for d in os.environ.get("PATH", "").split(os.pathsep)
               for cc in ("cc", "gcc")):
        return "no C compiler on PATH"
    return None


def build(target: Path) -> Path:
    """Install the compiled build of this checkout into `target` (made or emptied)."""
    target.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PRESENCE_GATEWAY_COMPILE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--upgrade", "--target", str(target), str(ROOT)],
        env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compiled build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return target


if __name__ == "__main__":
    why = missing()
    if why:
        sys.exit(f"cannot build: {why}")
    print(build(Path(sys.argv[1]).resolve()))
