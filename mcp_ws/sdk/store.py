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
once every reader has had them; with a reader behind, or none, `append` waits instead,
so nothing a client could still come back for is dropped), and the store's within
``max_total_bytes``: the oldest finished calls' events go first, then the oldest
finished calls no one reads, then running calls' events every reader has had (for a
call no one reads now, those its own caller had before it went); past that, producers
wait. Running calls no one reads (their client gone, no reader attached) keep at most
``max_unread_bytes`` of events their caller never had, together: their producers wait
past it, so that vanished clients' calls cannot fill the whole store and stall the
calls of everyone else for the resume grace.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgpack

from ..protocol.errors import EventsGone, InvalidCursor, UnknownHandle

StoreError = UnknownHandle | EventsGone | InvalidCursor
"""What a read may raise, each with its JSON-RPC ``code`` (and ``data``)."""

__all__ = [
    "DEFAULT_MAX_CALL_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "DEFAULT_MAX_UNREAD_BYTES",
    "DEFAULT_RETAIN",
    "EVENTS_GONE",
    "EVENT_OVERHEAD",
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
"""Bytes kept for every call together: events, start events, outcomes, bookkeeping."""

DEFAULT_MAX_UNREAD_BYTES = DEFAULT_MAX_TOTAL_BYTES // 4
"""Bytes of events kept for the running calls no one reads, together (by default a
quarter of the total budget, whatever it is)."""

CALL_OVERHEAD = 256
"""Bytes a call is counted for beyond its events, start event and outcome."""

EVENT_OVERHEAD = 48
"""Bytes an event is counted for beyond its encoding: the ``bytes`` object's header and
its slot in the call's deque (41 on 64-bit CPython), so that the budgets bound the
memory the store really holds, however small the events."""

UNKNOWN_HANDLE = UnknownHandle.code
"""JSON-RPC code: no call with this handle that you may read."""

EVENTS_GONE = EventsGone.code
"""JSON-RPC code: the events after the cursor are no longer kept (data: ``earliestSeq``)."""


_ORIGIN = "origin"  # the cursor of the call's own caller


_packer = msgpack.Packer(use_bin_type=True)  # one for all: packb would make one per call


def new_handle() -> str:
    """A new call's handle: 24 random bytes as URL-safe base64 (32 characters), never
    starting with ``-`` (a command line would take it for an option)."""
    while True:
        handle = secrets.token_urlsafe(24)
        if handle[0] != "-":
            return handle


def encode(event: Mapping[str, Any]) -> bytes:
    """An event, start or outcome as a store keeps it (MessagePack, bytes as ``bin``)."""
    data: bytes = _packer.pack(event)
    return data


def decode(data: bytes) -> Any:
    """What `encode` made, back."""
    return msgpack.unpackb(data, raw=False)


@dataclass(eq=False)
class _Call:
    principal: str
    # The kept events, encoded (exact sizes; bytes are nothing for the garbage collector
    # to scan, however many are kept), seqs first_seq, first_seq + 1, ...
    events: deque[bytes] = field(default_factory=deque)
    first_seq: int = 1
    size: int = 0  # bytes of its kept events
    fixed: int = 0  # of what it keeps until it expires: its start, outcome, bookkeeping
    next_seq: int = 0  # the seq the next event gets
    outcome: bytes | None = None
    finished_at: float | None = None
    # How far each reader has had the events: the call's own caller (key ``ORIGIN``,
    # until it is gone) and each attached read. Only what all have had may be trimmed.
    cursors: dict[object, int] = field(default_factory=dict)
    start: Mapping[str, Any] = field(default_factory=dict)  # seq 0, kept while the call is
    # What its own caller had when it went (its last cursor), and those events' bytes
    # still kept: they may go for the total budget once no reader is left, and they do
    # not count as unread.
    had: int = 0
    had_bytes: int = 0
    _changed: anyio.Event | None = None  # made only when someone waits (appends are hot)

    def notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        """Wait for the next change (an event, a reader coming or going, the outcome)."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    @property
    def earliest(self) -> int:
        return self.first_seq if self.events else self.next_seq

    def drop_oldest(self) -> int:
        """Drop the oldest kept event; its size."""
        size = len(self.events.popleft()) + EVENT_OVERHEAD
        if self.first_seq <= self.had:
            self.had_bytes -= size
        self.first_seq += 1
        self.size -= size
        return size

    @property
    def unread(self) -> int:
        """Bytes of its kept events its own caller had not had when it went."""
        return self.size - self.had_bytes


class EmbeddedStore:
    """Calls' events and outcomes in this process's memory (see the module docstring)."""

    def __init__(
        self,
        *,
        retain: float = DEFAULT_RETAIN,
        max_call_bytes: int = DEFAULT_MAX_CALL_BYTES,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_unread_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_unread_bytes is None:
            max_unread_bytes = max(max_total_bytes // 4, 1)
        if retain < 0 or min(max_call_bytes, max_total_bytes, max_unread_bytes) < 1:
            raise ValueError("retain must be >= 0 and the byte budgets >= 1")
        self.retain = retain
        self.max_call_bytes = max_call_bytes
        self.max_total_bytes = max_total_bytes
        self.max_unread_bytes = max_unread_bytes
        self._clock = clock
        self._calls: dict[str, _Call] = {}
        self.bytes = 0
        """Bytes kept now, every call together (see `CALL_OVERHEAD`)."""
        self._room: anyio.Event | None = None  # made only when a producer waits for room
        self._finished: deque[tuple[float, str]] = deque()  # in the order they finished
        self._unread: set[_Call] = set()  # running calls with no reader at all

    async def __aenter__(self) -> EmbeddedStore:
        return self  # nothing to open: `RedisStore` has a connection

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def open(
        self,
        principal: str,
        start: Mapping[str, Any],
        on_cancel: Callable[[], None] | None = None,
    ) -> str:
        """A new call of ``principal`` whose ``start`` event (seq 0) is kept with it: its
        handle. Its events are numbered from 1. Its caller counts as a reader (it reads
        the call directly) until `origin_gone`: each `append` says it had the events
        before (they are sent to it in order), or `delivered` says how far it got.
        ``on_cancel`` is for stores shared by servers; here a call is cancelled where it
        runs."""
        self._expire()
        handle = new_handle()
        call = _Call(principal=principal, next_seq=1, start=start)
        call.fixed = CALL_OVERHEAD + len(repr(start))
        self.bytes += call.fixed
        call.cursors[_ORIGIN] = 0
        self._calls[handle] = call
        return handle

    def delivered(self, handle: str, seq: int) -> None:
        """The call's own caller has had the events up to ``seq``."""
        call = self._calls.get(handle)
        if call is not None and _ORIGIN in call.cursors:
            call.cursors[_ORIGIN] = seq  # per event: only a waiting producer is woken
            if call._changed is not None or self._room is not None:
                call.notify()
                self._room_changed()

    async def origin_gone(self, handle: str) -> None:
        """The call's own caller reads no more (its session ended, or it has its
        outcome)."""
        self._origin_gone(handle)

    def _origin_gone(self, handle: str) -> None:
        call = self._calls.get(handle)
        if call is None:
            return
        had = call.cursors.pop(_ORIGIN, None)
        if had is not None:
            call.had = had
            count = max(0, min(had - call.first_seq + 1, len(call.events)))
            call.had_bytes = sum(len(call.events[i]) for i in range(count))
            call.had_bytes += count * EVENT_OVERHEAD
            self._no_reader(call)
            call.notify()
            self._room_changed()

    def _no_reader(self, call: _Call) -> None:
        if not call.cursors and call.outcome is None:
            self._unread.add(call)

    @property
    def unread_bytes(self) -> int:
        """Bytes of events kept now for the running calls no one reads, beyond what
        their own callers had had."""
        return sum(call.unread for call in self._unread)

    def append_nowait(self, handle: str, event: Mapping[str, Any] | bytes) -> int | None:
        """`append` if the event fits at once (its seq), else ``None``."""
        call = self._calls[handle]
        data = event if isinstance(event, bytes) else encode(event)
        size = len(data) + EVENT_OVERHEAD
        if call.size + size > self.max_call_bytes or self.bytes + size > self.max_total_bytes:
            return None
        if not call.cursors and self.unread_bytes + size > self.max_unread_bytes:
            return None
        return self._add(call, data)

    def _add(self, call: _Call, data: bytes) -> int:
        seq = call.next_seq
        cursors = call.cursors
        if _ORIGIN in cursors:  # the caller is sent events in order: it had the one before
            cursors[_ORIGIN] = seq - 1
        if not call.events:
            call.first_seq = seq
        call.next_seq = seq + 1
        call.events.append(data)
        call.size += len(data) + EVENT_OVERHEAD
        self.bytes += len(data) + EVENT_OVERHEAD
        if call._changed is not None:
            call.notify()
        return seq

    async def append(self, handle: str, event: Mapping[str, Any] | bytes) -> int:
        """Keep one event of a running call (a mapping, or already encoded); returns
        its seq. Waits while the call is at its byte budget and no reader has had its
        oldest events, and while the store is at its total budget and only running
        calls' unread events hold it."""
        call = self._calls[handle]
        data = event if isinstance(event, bytes) else encode(event)
        size = len(data) + EVENT_OVERHEAD
        if _ORIGIN in call.cursors:  # it had the one before (see _add)
            self._mark_read(call, _ORIGIN, call.next_seq - 1)
        while True:
            if call.size + size > self.max_call_bytes and call.events:
                if not self._trim_read(call):
                    await call.changed()  # a reader will take them, or the call ends
                continue
            if self.bytes + size > self.max_total_bytes and not self._make_room(size):
                await self._room_freed()  # a reader, an outcome or an expiry frees some
                continue
            if not call.cursors and self.unread_bytes + size > self.max_unread_bytes:
                await self._room_freed()  # a reader comes, or another such call ends
                continue
            break
        return self._add(call, data)

    async def finish(self, handle: str, outcome: Mapping[str, Any]) -> None:
        """The call's one outcome (its final result, or its error)."""
        call = self._calls.get(handle)
        if call is None or call.outcome is not None:
            return
        call.outcome = encode(outcome)
        self._unread.discard(call)
        call.finished_at = self._clock()
        self._finished.append((call.finished_at, handle))
        call.fixed += len(call.outcome)
        self.bytes += len(call.outcome)
        self._origin_gone(handle)  # the caller has its answer
        call.notify()
        self._make_room(0)  # the outcome counts too
        self._room_changed()  # its events may go now, for calls still running

    async def read(
        self, handle: str, principal: str, after: int | None = None
    ) -> AsyncGenerator[tuple[int | None, Mapping[str, Any]], None]:
        """``(0, start)`` first, its ``after`` field the cursor the reader continues from;
        then ``(seq, event)`` for each event after ``after`` (all kept ones when
        ``None``), live ones as they come, then ``(None, outcome)``. Raises `StoreError`."""
        if after is not None and (type(after) is not int or after < 0):
            raise InvalidCursor(after)
        self._expire()
        call = self._calls.get(handle) if isinstance(handle, str) else None
        if call is None or not hmac.compare_digest(call.principal, principal):
            raise UnknownHandle()
        cursor = call.earliest - 1 if after is None else after
        if cursor + 1 < call.earliest:
            raise EventsGone(call.earliest)
        reader = object()
        call.cursors[reader] = cursor
        if self._unread:
            self._unread.discard(call)
            self._room_changed()  # it may go on past the share of calls no one reads
        call.notify()
        try:
            yield 0, {**call.start, "after": cursor}
            while True:
                if cursor + 1 < call.earliest:
                    raise EventsGone(call.earliest)  # trimmed for the total budget
                if cursor + 1 < call.next_seq:  # the next one is kept: by its index
                    seq = cursor + 1
                    yield seq, decode(call.events[seq - call.first_seq])
                    cursor = seq
                    self._mark_read(call, reader, seq)
                    continue
                if call.outcome is not None:
                    yield None, decode(call.outcome)
                    return
                await call.changed()
        finally:
            del call.cursors[reader]
            self._no_reader(call)
            call.notify()
            self._room_changed()

    async def owns(self, handle: str, principal: str) -> bool:
        """Whether ``handle`` is a call of ``principal`` the store still keeps."""
        call = self._calls.get(handle)
        return call is not None and hmac.compare_digest(call.principal, principal)

    async def request_cancel(self, handle: str, principal: str) -> bool:
        """False: a call in this store runs in this process, and is cancelled there."""
        return False

    def readers(self, handle: str) -> int:
        """How many read the call now (its own caller included, until `origin_gone`)."""
        call = self._calls.get(handle)
        return len(call.cursors) if call is not None else 0

    async def unread_for(self, handle: str, seconds: float) -> bool:
        """Wait until the running call has had no reader for ``seconds`` in a row
        (True), or until it has its outcome (False)."""
        call = self._calls.get(handle)
        while call is not None and call.outcome is None:
            if call.cursors:
                await call.changed()
                continue
            with anyio.move_on_after(seconds) as idle:
                while not call.cursors and call.outcome is None:
                    await call.changed()
            if idle.cancelled_caught:
                return True
        return False

    def _mark_read(self, call: _Call, reader: object, seq: int) -> None:
        if seq > call.cursors[reader]:
            call.cursors[reader] = seq
            call.notify()  # a producer waiting at the budget may trim now
            self._room_changed()

    def _trim_read(self, call: _Call) -> bool:
        """Drop the call's oldest event if every reader has had it; whether one went."""
        if call.cursors and call.events and call.first_seq <= min(call.cursors.values()):
            self.bytes -= call.drop_oldest()
            return True
        return False

    def _trim_had(self, call: _Call) -> bool:
        """Drop the oldest event of a running call no one reads if its own caller had
        it (a client that comes back below it gets `EventsGone`); whether one went."""
        if not call.cursors and call.events and call.first_seq <= call.had:
            self.bytes -= call.drop_oldest()
            return True
        return False

    def _make_room(self, size: int) -> bool:
        """Free room for ``size`` more bytes within the total budget, in this order: the
        oldest finished calls' events, then the oldest finished calls no one reads, then
        running calls' events every reader has had (for a call no one reads now, those
        its own caller had). Whether it fits now. A running call's unread events are
        never dropped: their producers wait instead."""
        limit = self.max_total_bytes - size
        if self.bytes <= limit:
            return True
        self._expire()
        finished = [(h, c) for _, h in self._finished if (c := self._calls.get(h)) is not None]
        for _, call in finished:
            while self.bytes > limit and call.events:
                self.bytes -= call.drop_oldest()
            call.notify()
            if self.bytes <= limit:
                return True
        for handle, call in finished:
            if not call.cursors:
                self._forget(handle)
                if self.bytes <= limit:
                    return True
        for call in list(self._calls.values()):
            while self.bytes > limit and (self._trim_read(call) or self._trim_had(call)):
                pass
            if self.bytes <= limit:
                return True
        return False

    def _room_changed(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    async def _room_freed(self) -> None:
        if self._room is None:
            self._room = anyio.Event()
        await self._room.wait()

    def _expire(self) -> None:
        """Forget the calls whose retention ended (oldest first; one being read waits)."""
        now = self._clock()
        finished = self._finished
        being_read = []
        while finished and now - finished[0][0] >= self.retain:
            _, handle = finished.popleft()
            call = self._calls.get(handle)
            if call is None:
                continue  # forgotten already, for the total budget
            if call.cursors:
                being_read.append((now, handle))  # looked at again later
                continue
            self._forget(handle)
        finished.extend(being_read)

    def _forget(self, handle: str) -> None:
        call = self._calls.pop(handle, None)
        if call is None:
            return
        self._unread.discard(call)
        self.bytes -= call.size + call.fixed
        self._room_changed()

    def __len__(self) -> int:
        return len(self._calls)
