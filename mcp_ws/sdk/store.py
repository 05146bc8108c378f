"""The embedded call store: what a streamed call sent, kept for readers that come back.

A first slice of re-attach (issue 31): a call that opted in to partial results gets a
*handle*, 192 random bits bound to the principal that started it. Its events (each with
its ``seq``) and then its one outcome are kept while it runs and for ``retain`` seconds
after, within a byte budget per call and one for the whole store. A reader asks for the
events after a cursor (``after`` is exclusive, as in SEP-2694's ``tasks/stream``): it
gets those still kept, then the live ones, then the outcome.

Errors (mcp_ws/protocol/errors.py), each with the JSON-RPC code a server answers with:

- `UnknownHandle`: no such handle, another principal's, one past its retention, or a
  malformed one: the same code and message for all, so a guess learns nothing;
- `EventsGone`: the cursor is below what is still kept; ``earliest_seq`` says where the
  kept events begin;
- `InvalidCursor`: a negative ``after`` (invalid params).

Bounds: a call's kept bytes stay within ``max_call_bytes`` (the oldest events go first
while a reader keeps up; with no reader past them, `append` waits instead, so nothing a
client could still come back for is dropped), and the store's within ``max_total_bytes``
(the oldest finished calls' events go first).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..protocol.errors import EventsGone, InvalidCursor, UnknownHandle

StoreError = UnknownHandle | EventsGone | InvalidCursor
"""What a read may raise, each with its JSON-RPC ``code`` (and ``data``)."""

__all__ = [
    "DEFAULT_MAX_CALL_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "DEFAULT_RETAIN",
    "EVENTS_GONE",
    "UNKNOWN_HANDLE",
    "EmbeddedStore",
    "EventsGone",
    "InvalidCursor",
    "StoreError",
    "UnknownHandle",
]

DEFAULT_RETAIN = 300.0
"""Seconds a finished call's events and outcome are kept (``mcp-ws serve --retain``)."""

DEFAULT_MAX_CALL_BYTES = 8 * 1024 * 1024
"""Bytes of events kept for one call."""

DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024
"""Bytes of events kept for every call together."""

UNKNOWN_HANDLE = UnknownHandle.code
"""JSON-RPC code: no call with this handle that you may read."""

EVENTS_GONE = EventsGone.code
"""JSON-RPC code: the events after the cursor are no longer kept (data: ``earliestSeq``)."""


@dataclass(eq=False)
class _Call:
    principal: str
    events: deque[tuple[int, Mapping[str, Any], int]] = field(default_factory=deque)
    bytes: int = 0
    next_seq: int = 0  # the seq the next event gets
    outcome: Mapping[str, Any] | None = None
    finished_at: float | None = None
    readers: int = 0  # the call's own caller (while ``origin``) and attached readers
    origin: bool = True
    read_up_to: int = -1  # the highest seq every reader has had (while any read)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    @property
    def earliest(self) -> int:
        return self.events[0][0] if self.events else self.next_seq


class EmbeddedStore:
    """Calls' events and outcomes in this process's memory (see the module docstring)."""

    def __init__(
        self,
        *,
        retain: float = DEFAULT_RETAIN,
        max_call_bytes: int = DEFAULT_MAX_CALL_BYTES,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retain < 0 or max_call_bytes < 1 or max_total_bytes < 1:
            raise ValueError("retain must be >= 0 and the byte budgets >= 1")
        self.retain = retain
        self.max_call_bytes = max_call_bytes
        self.max_total_bytes = max_total_bytes
        self._clock = clock
        self._calls: dict[str, _Call] = {}
        self.bytes = 0
        """Bytes of events kept now, every call together."""

    def open(self, principal: str) -> str:
        """A new call of ``principal``: its handle. Its caller counts as a reader (it
        reads the call directly) until `origin_gone`; `delivered` says how far it got."""
        self._expire()
        handle = secrets.token_urlsafe(24)
        self._calls[handle] = _Call(principal=principal, readers=1)
        return handle

    def delivered(self, handle: str, seq: int) -> None:
        """The call's own caller has had the events up to ``seq``."""
        call = self._calls.get(handle)
        if call is not None:
            self._mark_read(call, seq)

    def origin_gone(self, handle: str) -> None:
        """The call's own caller reads no more (its session ended, or it has its
        outcome)."""
        call = self._calls.get(handle)
        if call is not None and call.origin:
            call.origin = False
            call.readers -= 1
            call.notify()

    async def append(self, handle: str, event: Mapping[str, Any], size: int) -> int:
        """Keep one event of a running call; returns its seq. Waits while the call is at
        its byte budget and no reader has had its oldest events."""
        call = self._calls[handle]
        while call.bytes + size > self.max_call_bytes and call.events:
            if not self._trim_read(call):
                await call.changed.wait()  # a reader will take them, or the call ends
        seq = call.next_seq
        call.next_seq += 1
        call.events.append((seq, event, size))
        call.bytes += size
        self.bytes += size
        self._fit_total(keep=call)
        call.notify()
        return seq

    def finish(self, handle: str, outcome: Mapping[str, Any]) -> None:
        """The call's one outcome (its final result, or its error)."""
        call = self._calls.get(handle)
        if call is None or call.outcome is not None:
            return
        call.outcome = outcome
        call.finished_at = self._clock()
        self.origin_gone(handle)  # the caller has its answer
        call.notify()

    async def read(
        self, handle: str, principal: str, after: int | None = None
    ) -> AsyncIterator[tuple[int | None, Mapping[str, Any]]]:
        """``(seq, event)`` for each event after ``after`` (all kept ones when ``None``),
        live ones as they come, then ``(None, outcome)``. Raises `StoreError`."""
        if after is not None and (type(after) is not int or after < 0):
            raise InvalidCursor(after)
        self._expire()
        call = self._calls.get(handle) if isinstance(handle, str) else None
        if call is None or not hmac.compare_digest(call.principal, principal):
            raise UnknownHandle()
        cursor = call.earliest - 1 if after is None else after
        if cursor + 1 < call.earliest:
            raise EventsGone(call.earliest)
        call.readers += 1
        try:
            while True:
                if cursor + 1 < call.earliest:
                    raise EventsGone(call.earliest)  # trimmed for the total budget
                pending = [(s, e) for s, e, _ in call.events if s > cursor]
                for seq, event in pending:
                    yield seq, event
                    cursor = seq
                    self._mark_read(call, seq)
                if pending:
                    continue
                if call.outcome is not None:
                    yield None, call.outcome
                    return
                await call.changed.wait()
        finally:
            call.readers -= 1

    def _mark_read(self, call: _Call, seq: int) -> None:
        if seq > call.read_up_to:
            call.read_up_to = seq
            call.notify()  # a producer waiting at the budget may trim now

    def _trim_read(self, call: _Call) -> bool:
        """Drop the call's oldest event if a reader has had it; whether one went."""
        if call.readers and call.events and call.events[0][0] <= call.read_up_to:
            _, _, size = call.events.popleft()
            call.bytes -= size
            self.bytes -= size
            return True
        return False

    def _fit_total(self, keep: _Call) -> None:
        """Trim the oldest finished calls' events (then others') to fit the total."""
        if self.bytes <= self.max_total_bytes:
            return
        order = sorted(
            (c for c in self._calls.values() if c is not keep and c.events),
            key=lambda c: (c.finished_at is None, c.finished_at or 0.0),
        )
        for call in [*order, keep]:
            while self.bytes > self.max_total_bytes and call.events:
                _, _, size = call.events.popleft()
                call.bytes -= size
                self.bytes -= size
            call.notify()
            if self.bytes <= self.max_total_bytes:
                return

    def _expire(self) -> None:
        now = self._clock()
        for handle, call in list(self._calls.items()):
            finished = call.finished_at
            if finished is not None and now - finished >= self.retain and not call.readers:
                self.bytes -= call.bytes
                del self._calls[handle]

    def __len__(self) -> int:
        return len(self._calls)
