"""Build hook: everything is in pyproject.toml; this adds only the optional compiled build.

With PRESENCE_GATEWAY_COMPILE=1 the per-observation path (gateway/build.py COMPILED) is
compiled with mypyc into extension modules beside the .py files (`make wheel`; needs mypy,
a C compiler and the Python headers). Without it, the build is pure Python, as before.
"""

from __future__ import annotations

import os
import runpy
import shutil
from pathlib import Path
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def compiled_extensions() -> list[Any]:
    # setuptools reuses build/lib between builds: an extension module left there by an
    # earlier compiled build would ship in a pure wheel (and an old one in a new wheel)
    for stale in (ROOT / "build").glob("lib*"):
        shutil.rmtree(stale, ignore_errors=True)
    build = runpy.run_path(str(ROOT / "gateway" / "build.py"))
    if os.environ.get(build["ENV"], "") not in ("1", "true", "yes"):
        return []
    try:
        from mypyc.build import mypycify  # only the compiled build needs mypy
    except ImportError:
        raise SystemExit(f"{build['ENV']}=1 needs mypy (mypyc) where the wheel is built: "
                         "`make wheel`, or pip with --no-build-isolation in an environment "
                         "that has mypy, setuptools and a C compiler") from None

    # mypyc names a module after its folders; the sources live in gateway/ but install as
    # presence_gateway (package-dir), so it compiles a view of symlinks with the installed
    # shape, as .ci/typecheck does for mypy.
    view = ROOT / "build" / "mypycview"
    shutil.rmtree(view, ignore_errors=True)
    pkg = view / "presence_gateway"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "gateway").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name in ("drivers", "firmware_tools"):
        (pkg / name).symlink_to(ROOT / name)
    here = Path.cwd()
    os.chdir(view)  # module names from the view's folders
    try:
        return list(mypycify([str(Path("presence_gateway") / p) for p in build["COMPILED"]],
                             opt_level="3", group_name="presence_gateway",
                             target_dir=str(ROOT / "build" / "mypyc")))
    finally:
        os.chdir(here)


setup(ext_modules=compiled_extensions())
