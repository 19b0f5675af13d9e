"""Which build is running: pure Python, or the hot path compiled with mypyc.

The compiled build is the same source: setup.py compiles the modules named in COMPILED with
mypyc when PRESENCE_GATEWAY_COMPILE=1 (`make wheel`), and the wheel carries each one's .py
too. Measured (docs/performance.md "Compiled build"): the real day's instructions per frame
-24 %, a crowd of 100k devices within 1.3x the cost per observation of 1k. The pure-Python
install stays the default (any machine, no compiler) and runs the whole suite; the compiled
one runs the core tests and must give the same events (tests/test_compiled.py).

COMPILED is the per-observation path and nothing else: the parser, the throttle, the privacy
boundary, the presence engine, the pipeline and the envelope. Left out on purpose: the event
and model dataclasses (compiled, every read of their fields from the uncompiled rest got
slower: the day cost more than with nothing compiled), the config and YAML readers (a
compiled recursive walk of hostile YAML overflowed the C stack instead of refusing it), and
every module with I/O.

Kept free of imports: setup.py reads COMPILED from this file before anything is installed.
"""

from __future__ import annotations

import importlib

ENV = "PRESENCE_GATEWAY_COMPILE"

# Paths under gateway/ (module presence_gateway.<path with dots>).
COMPILED: tuple[str, ...] = (
    "core/wifi/frames.py",
    "core/wifi/radiotap.py",
    "core/throttle.py",
    "core/privacy.py",
    "core/envelope.py",
    "core/pipeline.py",
    "core/presence/tracker.py",
    "core/presence/units.py",
    "core/presence/wheel.py",
    "core/presence/sessions.py",
    "core/presence/hopping.py",
    "core/presence/dwell.py",
    "core/presence/placement.py",
    "core/presence/population.py",
    "core/presence/footfall.py",
    "core/presence/grouping.py",
    "core/presence/visits.py",
    "core/presence/zones.py",
    "core/presence/fusion.py",
    "core/state.py",
)


def module_name(path: str) -> str:
    return "presence_gateway." + path.removesuffix(".py").replace("/", ".")


def compiled_modules() -> list[str]:
    """The modules of COMPILED that this process runs compiled (an extension module)."""
    out = []
    for path in COMPILED:
        mod = importlib.import_module(module_name(path))
        if not str(getattr(mod, "__file__", "")).endswith(".py"):
            out.append(mod.__name__)
    return out


def describe() -> str:
    """One line for --version and the start-up log."""
    n = len(compiled_modules())
    if n == 0:
        return "pure Python"
    if n == len(COMPILED):
        return f"compiled with mypyc ({n} modules)"
    return f"partly compiled with mypyc ({n} of {len(COMPILED)} modules)"
