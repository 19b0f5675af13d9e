"""The `events.resend` command on a running gateway: guard, validate, re-queue, answer.

Invariants: nothing in the outbox changes unless the command is sealed, fresh, unseen and its
range valid (core/resend.py); re-queued events keep their id, sequence and bytes; the answer
is one result event on `.../commands/events.resend/result` (or a rejection event).
"""

from __future__ import annotations

from presence_gateway.adapters.outbox import Outbox
from presence_gateway.core.commands import CommandGuard, CommandRejected, result_event
from presence_gateway.core.events import Event
from presence_gateway.core.resend import (
    EVENTS_RESEND,
    check_span,
    missing_ranges,
    resend_request,
    resend_result,
)


def _refused(now: float, why: CommandRejected) -> list[Event]:
    return [result_event(EVENTS_RESEND, now, command_id=why.id, ok=False, reason=why.reason,
                         errors=(why.detail,))]


async def resend(guard: CommandGuard, outbox: Outbox, payload: bytes, now: float) -> list[Event]:
    cmd = guard.check(EVENTS_RESEND, payload, now)
    if isinstance(cmd, CommandRejected):
        return _refused(now, cmd)
    last_seq = await outbox.last_seq()
    req = resend_request(cmd, last_seq=last_seq, now=now, max_skew_s=guard.max_skew_s)
    if isinstance(req, CommandRejected):
        return _refused(now, req)
    first, last = req.first, req.last
    if req.since is not None:
        first, last = await outbox.first_seq_since(req.since), last_seq
        if first is None:  # nothing held from then on: say so, with what is held
            return [resend_result(now, command_id=cmd.id, first=None, last=None, requeued=0,
                                  waiting=0, missing=(), oldest_held=await outbox.oldest_seq())]
        too_large = check_span(first, last, cmd.id)
        if too_large is not None:
            return _refused(now, too_large)
    assert first is not None and last is not None
    done = await outbox.requeue(first, last)
    return [resend_result(now, command_id=cmd.id, first=first, last=last,
                          requeued=done.requeued, waiting=done.waiting,
                          missing=missing_ranges(first, last, done.held),
                          oldest_held=await outbox.oldest_seq())]
