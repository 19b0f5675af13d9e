"""The `events.resend` command: which delivered events to send again (pure validation).

Sealed and admitted like every command (core/commands.py), on
`{prefix}/v1/{store}/{gateway}/commands/events.resend`, with ONE of:

    {"from_sequence": <int>, "to_sequence": <int>}   inclusive, 1 <= from <= to <= last sent
    {"since": "<RFC3339 time>"}                        events whose time is at or after it

The gateway re-queues the events of the range it still holds (storage.keep_delivered) with
their original id, sequence and bytes, and answers on `.../commands/events.resend/result`
with how many were re-queued and which sequence numbers of the range it no longer holds.

Invariants: a request is either valid as a whole or refused (`invalid`, `too_large`) with a
sentence; at most `MAX_SPAN` sequence numbers per command (the shell's work and the answer stay
bounded; a consumer sends several commands for more); nothing changes on a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from presence_gateway.core.commands import Command, CommandRejected
from presence_gateway.core.events import ResendResult

EVENTS_RESEND = "events.resend"
MAX_SPAN = 100_000


@dataclass(frozen=True, slots=True)
class ResendRequest:
    command_id: str
    first: int | None = None   # a sequence range ...
    last: int | None = None
    since: float | None = None  # ... or an event time (Unix seconds)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resend_request(cmd: Command, *, last_seq: int, now: float, max_skew_s: float = 60.0,
                   max_span: int = MAX_SPAN) -> ResendRequest | CommandRejected:
    """The range of an admitted `events.resend` command, or why it is unusable."""
    body, cid = cmd.body, cmd.id
    ranged = "from_sequence" in body or "to_sequence" in body
    if ranged == ("since" in body):
        return CommandRejected("invalid", "give from_sequence and to_sequence, or since", cid)
    if not ranged:
        since = _rfc3339(body.get("since"))
        if since is None:
            return CommandRejected("invalid", "since must be an RFC 3339 time with a zone", cid)
        if since > now + max_skew_s:
            return CommandRejected("invalid", "since is in the future", cid)
        return ResendRequest(cid, since=since)
    first, last = body.get("from_sequence"), body.get("to_sequence")
    if not (_int(first) and _int(last)):
        return CommandRejected("invalid", "from_sequence and to_sequence must be integers", cid)
    assert isinstance(first, int) and isinstance(last, int)
    if not 1 <= first <= last:
        return CommandRejected("invalid", "need 1 <= from_sequence <= to_sequence", cid)
    if last > last_seq:
        return CommandRejected("invalid", f"to_sequence is beyond the last sequence sent"
                                          f" ({last_seq})", cid)
    refused = check_span(first, last, cid, max_span)
    return refused if refused is not None else ResendRequest(cid, first=first, last=last)


def check_span(first: int, last: int, command_id: str,
               max_span: int = MAX_SPAN) -> CommandRejected | None:
    if last - first + 1 > max_span:
        return CommandRejected("too_large", f"{last - first + 1} sequence numbers asked, at most"
                                            f" {max_span} per command", command_id)
    return None


def missing_ranges(first: int, last: int, held: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Inclusive runs of [first, last] not in `held`."""
    out: list[tuple[int, int]] = []
    nxt = first
    for seq in sorted(s for s in set(held) if first <= s <= last):
        if seq > nxt:
            out.append((nxt, seq - 1))
        nxt = seq + 1
    if nxt <= last:
        out.append((nxt, last))
    return tuple(out)


def resend_result(now: float, *, command_id: str, first: int | None, last: int | None,
                  requeued: int, waiting: int, missing: tuple[tuple[int, int], ...],
                  oldest_held: int | None) -> ResendResult:
    return ResendResult(time=now, command=EVENTS_RESEND, command_id=command_id, ok=True,
                        from_sequence=first, to_sequence=last, requeued=requeued,
                        waiting=waiting, missing=missing, oldest_held=oldest_held)


def _rfc3339(value: object) -> float | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if dt.tzinfo is None else dt.timestamp()
