"""`events.resend` validation (pure): one form of range, integers, bounds, span, times."""

from __future__ import annotations

from typing import Any

import pytest

from presence_gateway.core.commands import Command, CommandRejected
from presence_gateway.core.resend import (
    EVENTS_RESEND,
    MAX_SPAN,
    ResendRequest,
    missing_ranges,
    resend_request,
    resend_result,
)

NOW = 1_750_000_000.0


def cmd(**args: Any) -> Command:
    return Command(name=EVENTS_RESEND, id="cmd-00000001", issued_at=int(NOW),
                   body={"command": EVENTS_RESEND, "target": "s1/gw1", "id": "cmd-00000001",
                         "issued_at": int(NOW), **args})


def test_a_sequence_range_and_a_time_are_read() -> None:
    assert resend_request(cmd(from_sequence=5, to_sequence=9), last_seq=10, now=NOW) == \
        ResendRequest("cmd-00000001", first=5, last=9)
    got = resend_request(cmd(since="2025-06-15T15:06:40Z"), last_seq=10, now=NOW)
    assert got == ResendRequest("cmd-00000001", since=1_750_000_000.0)
    assert resend_request(cmd(since="2025-06-15T17:06:40+02:00"), last_seq=10,
                          now=NOW) == got


@pytest.mark.parametrize("args, reason", [
    ({}, "invalid"),
    ({"from_sequence": 1}, "invalid"),
    ({"from_sequence": 1, "to_sequence": 2, "since": "2025-06-15T15:06:40Z"}, "invalid"),
    ({"from_sequence": "1", "to_sequence": 2}, "invalid"),
    ({"from_sequence": 1.0, "to_sequence": 2}, "invalid"),
    ({"from_sequence": True, "to_sequence": 2}, "invalid"),
    ({"from_sequence": 0, "to_sequence": 2}, "invalid"),
    ({"from_sequence": -5, "to_sequence": 2}, "invalid"),
    ({"from_sequence": 9, "to_sequence": 2}, "invalid"),
    ({"from_sequence": 1, "to_sequence": 10**6 + 1}, "invalid"),       # beyond the last sent
    ({"from_sequence": 1, "to_sequence": MAX_SPAN + 1}, "too_large"),
    ({"since": "yesterday"}, "invalid"),
    ({"since": "2025-06-15T15:06:40"}, "invalid"),                    # no zone
    ({"since": 1_750_000_000}, "invalid"),
    ({"since": "2030-01-01T00:00:00Z"}, "invalid"),                   # in the future
    ({"since": "2025-06-15T15:06:40Z" + " " * 50}, "invalid"),
])
def test_bad_ranges_are_refused_with_a_reason(args: dict[str, Any], reason: str) -> None:
    got = resend_request(cmd(**args), last_seq=10**6, now=NOW)
    assert isinstance(got, CommandRejected)
    assert (got.reason, got.id) == (reason, "cmd-00000001") and got.detail


def test_the_largest_range_allowed_is_max_span() -> None:
    got = resend_request(cmd(from_sequence=7, to_sequence=7 + MAX_SPAN - 1), last_seq=10**6,
                         now=NOW)
    assert isinstance(got, ResendRequest)


def test_missing_ranges() -> None:
    assert missing_ranges(1, 10, [3, 4, 7, 99]) == ((1, 2), (5, 6), (8, 10))
    assert missing_ranges(1, 3, [1, 2, 3]) == ()
    assert missing_ranges(5, 6, []) == ((5, 6),)


def test_the_result_says_what_was_requeued_and_what_is_gone() -> None:
    ev = resend_result(NOW, command_id="cmd-00000001", first=1, last=10, requeued=6, waiting=1,
                       missing=((1, 2), (8, 8)), oldest_held=3)
    assert ev.topic_suffix == "commands/events.resend/result" and not ev.anonymous
    assert ev.payload() == {"command": "events.resend", "id": "cmd-00000001", "ok": True,
                            "time": NOW, "from_sequence": 1, "to_sequence": 10, "requeued": 6,
                            "waiting": 1, "missing": [[1, 2], [8, 8]], "missing_count": 3,
                            "oldest_held_sequence": 3}
