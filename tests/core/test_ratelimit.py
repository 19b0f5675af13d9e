"""Rejections per inbound topic: a burst gets through, then one per interval, the rest counted."""

from __future__ import annotations

from presence_gateway.core.ratelimit import RateLimit


def test_3000_junk_messages_become_a_handful_of_events() -> None:
    limit = RateLimit(burst=5, interval_s=10.0)
    t0 = 1_750_000_000.0
    # 3,000 junk messages over 60 s on one topic (the campaign's figure: 2,949 events before)
    allowed = sum(limit.allow("s1/identity/updates", t0 + i * 0.02) for i in range(3000))
    assert allowed == 5 + 5  # the burst, then one per 10 s over the next 50 s
    assert limit.suppressed["s1/identity/updates"] == 3000 - allowed
    # another topic has its own bucket; a quiet topic refills
    assert limit.allow("s1/gw1/commands/offers.reload", t0 + 60)
    assert limit.allow("s1/identity/updates", t0 + 200)
