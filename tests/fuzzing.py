"""Hypothesis budgets for the fuzz tests: small in `make test`, large in `make fuzz`.

`PG_FUZZ_SCALE` multiplies every budget (make fuzz sets it so each parser sees >= 300k cases).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("PG_FUZZ_SCALE", "1")))


def budget(examples: int) -> settings:
    """`examples` cases in the normal suite, `examples * PG_FUZZ_SCALE` under make fuzz."""
    return settings(max_examples=examples * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
