"""Shell: the publisher's data path: the outbox read ahead, a window of unacknowledged messages
refilled from the PUBACK callback, and the acknowledged rows deleted in batches.

A mixin of `Publisher` (adapters/publisher.py), kept apart so the publisher module stays small;
the invariants are the publisher's: rows go out oldest first, at most `window` unacknowledged
at a time, the window is refilled from inside the PUBACK callback (ack-clocked) while one pump
coroutine does the database I/O, and a row leaves the outbox only after its PUBACK or when the
broker rejects it for good. Nothing here connects or knows which broker it talks to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from paho.mqtt.client import Client
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from presence_gateway.adapters.mqttlink import Link
from presence_gateway.adapters.outbox import Outbox, StoredMessage

FETCH = 512  # rows read ahead per query
LOW_WATER = 128  # refill the read-ahead below this many rows
ACK_BATCH = 256  # delete after this many acks ...
ACK_DELAY_S = 0.1  # ... or this long after the first pending ack


class DrainSteps:
    """Read-ahead, window and batched deletes of a publisher; `Publisher` provides the state
    below (one connection at a time in `_link`, reset between connections)."""

    outbox: Outbox
    log: logging.Logger
    published: int
    acked: int
    rejected: int
    _link: Link | None
    _props: Properties | None
    _window: int
    _buffer: deque[StoredMessage]
    _inflight: dict[int, int]  # paho mid -> outbox rowid
    _acked: list[int]  # rowids acknowledged, not yet deleted
    _acked_since: float
    _status_acks: dict[int, asyncio.Future[None]]
    _cursor: int
    _exhausted: bool
    _more: bool
    _stopping: bool
    _kick: asyncio.Event

    async def _pump(self, link: Link) -> None:
        """Read ahead and batch deletes until the connection closes (publishing is ack-clocked)."""
        while not link.closed.done():
            self._kick.clear()
            if self._acked and (len(self._acked) >= ACK_BATCH or not self._inflight
                                or time.monotonic() - self._acked_since >= ACK_DELAY_S):
                await self._flush_acks()
            if len(self._buffer) <= LOW_WATER and (self._more or not self._exhausted):
                self._more = False
                rows = await self.outbox.oldest(FETCH, after=self._cursor)
                self._exhausted = len(rows) < FETCH
                if rows:
                    self._cursor = rows[-1].rowid
                    self._buffer.extend(rows)
                    self._fill()
                continue
            if not self._kick.is_set():
                if self._acked:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(ACK_DELAY_S):
                            await self._kick.wait()
                else:
                    await self._kick.wait()

    # -- paho callbacks (run in the loop thread) --------------------------------------------
    def _on_publish(self, client: Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties | None) -> None:
        rowid = self._inflight.pop(mid, None)
        if rowid is None:
            fut = self._status_acks.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        self.acked += 1
        if rc.is_failure:
            self.rejected += 1
            self.log.warning("broker rejected a message (%s); dropping it", rc.getName())
        if not self._acked:
            self._acked_since = time.monotonic()
        self._acked.append(rowid)
        if not self._stopping:
            self._fill()
        if len(self._acked) >= ACK_BATCH or not self._inflight or (
                len(self._buffer) <= LOW_WATER and not self._exhausted):
            self._kick.set()

    def _fill(self) -> None:
        """Publish from the read-ahead until the window is full."""
        link = self._link
        if link is None:
            return
        client, buf, inflight, props = link.client, self._buffer, self._inflight, self._props
        while buf and len(inflight) < self._window:
            m = buf.popleft()
            try:
                info = client.publish(m.topic, m.payload, m.qos, m.retain, props)
            except ValueError as exc:  # invalid topic or oversize payload: would block forever
                self.rejected += 1
                self._acked.append(m.rowid)
                self.log.warning("cannot publish message seq %d: %s; dropping it", m.seq, exc)
                continue
            if info.rc:
                buf.appendleft(m)
                return
            inflight[info.mid] = m.rowid
            self.published += 1

    def _on_append(self) -> None:
        self._more = True
        self._kick.set()

    # -- helpers ----------------------------------------------------------------------------
    async def _flush_acks(self) -> None:
        if self._acked:
            rowids, self._acked = self._acked, []
            await self.outbox.delete(rowids)

    def _reset_flight(self) -> None:
        """Forget unacknowledged sends: they are re-read from the outbox on the next connect."""
        self._inflight.clear()
        self._buffer.clear()
        self._status_acks.clear()
        self._cursor = 0
        self._exhausted = False
        self._more = True
