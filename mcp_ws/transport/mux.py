"""The I/O pump: drives a sans-I/O `Connection` over a `MessageChannel` with anyio.

Three tasks per connection, all in one task group:

- the **reader** feeds every received WebSocket message to the core and hands the
  resulting events to the application callback (on asyncio's TCP stream this runs in
  the socket's own callback, see `WebSocket.pump`, and the task only waits);
- the **writer** sleeps until woken, then sends everything ``data_to_send`` returns in
  one write (control frames first, queued data round-robin within credit, coalesced);
- the **timer** runs the core's timers (HELLO timeout, keepalive PING, dead peer).

The layer above never touches the core: it uses the stream verbs here (`open_stream`,
`send`, `cancel`, `acknowledge`, `wait_credit`), each of which wakes the writer
itself, as websockets' connection does with its send context. Producers blocked on
credit wait for their own stream only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from ..protocol.connection import Connection, ConnectionState, Role
from ..protocol.constants import ErrorCode
from ..protocol.errors import ConnectionClosedError
from ..protocol.events import (
    ConnectionTerminated,
    CreditGranted,
    Event,
    HelloReceived,
    StreamCancelled,
    StreamEnded,
)
from ..protocol.limits import Limits
from ..protocol.settings import Settings
from .websocket import MessageChannel

__all__ = ["MuxConnection"]

logger = logging.getLogger("mcp_ws.transport")

EventHandler = Callable[[list[Event]], None]

# Asked per request: globals are quicker than the enum's attributes.
_OPEN, _CLOSED = ConnectionState.OPEN, ConnectionState.CLOSED


class MuxConnection:
    """One mcp-ws v1 connection over an open WebSocket.

    ``on_events`` is called (synchronously, from the reader or timer task) with every
    batch of core events; it must not block. Run the pump with `run`; it returns when
    the connection is over, after which `termination` says why.
    """

    def __init__(
        self,
        channel: MessageChannel,
        role: Role,
        on_events: EventHandler,
        *,
        settings: Settings | None = None,
        limits: Limits | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        self.core = Connection(role, settings, limits=limits)
        self.termination: ConnectionTerminated | None = None
        self._channel = channel
        self._on_events = on_events
        self._close_timeout = close_timeout
        self._wake = anyio.Event()
        self._progress: anyio.Event | None = None  # created by the first waiter
        self._reader_done = anyio.Event()
        self._finished = anyio.Event()
        self._over = False  # _finished is set (read on every write: a plain flag)
        self._rearm = anyio.Event()
        self._armed: float | None = None
        self._armed_epoch = -1  # the core's timer_epoch when the deadline was last read
        self._credit_waiters: dict[int, anyio.Event] = {}  # by stream: woken by its credit

    # ------------------------------------------------------------------ stream verbs

    def open_stream(
        self, message: Mapping[str, Any], *, end: bool = False, deferred: bool = False
    ) -> int:
        """Open a stream of ours carrying ``message``; returns its id (see
        `Connection.open_stream` for what it raises). ``deferred``: the caller writes
        it with `write_now` (the writer task is not woken)."""
        sid = self.core.open_stream(message, end=end)
        if not deferred:
            self.wake()
        return sid

    def send(
        self,
        stream_id: int,
        message: Mapping[str, Any],
        *,
        end: bool = False,
        deferred: bool = False,
    ) -> None:
        """Queue ``message`` on a stream (0: the session stream); ``end`` ends it after.
        ``deferred`` as for `open_stream`."""
        self.core.send_message(stream_id, message, end=end)
        if not deferred:
            self.wake()

    def cancel(
        self, stream_id: int, error_code: ErrorCode = ErrorCode.CANCELLED, reason: str = ""
    ) -> None:
        """Reset a stream (CANCEL); a finished or unknown stream is left alone."""
        self.core.cancel_stream(stream_id, error_code, reason)
        self.wake()
        self._wake_credit_waiter(stream_id)

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of ``stream_id``: credit goes back."""
        if size and self.core.acknowledge_received(stream_id, size):
            self.wake()  # a CREDIT frame is due (they are batched, a quarter window each)

    def credit(self, stream_id: int) -> int:
        """Bytes that could be sent on ``stream_id`` now."""
        return self.core.available_credit(stream_id)

    async def wait_credit(self, stream_id: int) -> None:
        """Wait until ``stream_id`` may send (or it, or the connection, is over): woken by
        that stream's CREDIT, the connection's, the peer's HELLO, or its end."""
        if self.core.available_credit(stream_id) > 0 or self.core.closed or self.finished:
            return
        event = self._credit_waiters.get(stream_id)
        if event is None:
            event = self._credit_waiters[stream_id] = anyio.Event()
        await event.wait()

    @property
    def stream_slots(self) -> int:
        """How many more streams of ours may be opened now."""
        return self.core.stream_slots

    @property
    def accepting_streams(self) -> bool:
        """False once either side sent GOAWAY or the connection is over."""
        return self.core.state is _OPEN and not self._over

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (the core says so)."""
        return self.core.state is _CLOSED

    def buffered(self) -> int:
        """Bytes queued for the peer and not yet on the wire."""
        return self.core.buffered()

    def wake(self) -> None:
        """Let the writer send what is queued (the verbs above do it themselves)."""
        self._wake.set()

    def _wake_credit_waiter(self, stream_id: int) -> None:
        event = self._credit_waiters.pop(stream_id, None)
        if event is not None:
            event.set()

    def _wake_credit_waiters(self, events: list[Event]) -> None:
        if not self._credit_waiters:
            return
        for event in events:
            if isinstance(event, CreditGranted | StreamCancelled | StreamEnded):
                if event.stream_id:
                    self._wake_credit_waiter(event.stream_id)
                    continue
            elif not isinstance(event, HelloReceived | ConnectionTerminated):
                continue
            waiters, self._credit_waiters = self._credit_waiters, {}  # the whole connection
            for waiter in waiters.values():
                waiter.set()
            return

    # ------------------------------------------------------------------ for the binding

    @property
    def finished(self) -> bool:
        """Whether the pump has stopped (the connection is over)."""
        return self._over

    def closed_error(self) -> ConnectionClosedError:
        """The error that in-flight work fails with once the connection is over."""
        t = self.termination
        if t is None:
            return ConnectionClosedError("the connection is closed", remote=False)
        who = "the peer" if t.remote else "we"
        detail = f": {t.reason}" if t.reason else ""
        return ConnectionClosedError(
            f"connection closed ({t.error_code.name} from {who}, WebSocket {t.close_code}){detail}",
            error_code=t.error_code,
            remote=t.remote,
        )

    async def wait_sent(self, budget: int) -> None:
        """Wait until at most ``budget`` bytes are queued in the core (or the end)."""
        while self.core.buffered() > budget and not self.finished:
            await self._progress_event().wait()

    async def flush(self) -> None:
        """Wake the writer and wait until it has written what is queued now (or the end).

        For latency-critical messages: on return they were handed to the socket (as far
        as credit allowed), whichever task the event loop would have run first.
        """
        if self.finished:
            return
        written = self._progress_event()
        self.wake()
        await written.wait()

    def write_now(self) -> None:
        """Write what is queued from this task, without waiting, when the channel can
        (`WebSocket.can_send_now`): a request or a response reaches the socket a task
        hop sooner and the writer task stays asleep. Otherwise (a write under way, a
        socket still draining, TLS, trio) the writer is woken as usual. Order is kept:
        bytes enter the WebSocket in the order they leave the core."""
        channel = self._channel
        if self._over or not getattr(channel, "can_send_now", False):
            self.wake()
            return
        messages = self.core.data_to_send()
        if messages:
            channel.send_now(messages)  # type: ignore[attr-defined]
        if self._progress is not None:
            self._signal_progress()
        core = self.core
        if core.state is not _OPEN and core.is_finished:
            self.wake()  # the writer closes the WebSocket

    async def wait_finished(self) -> None:
        """Wait until the pump has stopped."""
        await self._finished.wait()

    def close(self, error_code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """GOAWAY: graceful (streams finish, then close 1000) or, with an error, at once."""
        self.core.close(error_code, reason)
        self.wake()

    # ------------------------------------------------------------------ the pump

    async def run(self) -> None:
        """Pump until the connection ends; never raises for the peer's misbehaviour."""
        self.wake()  # our HELLO is queued: it goes out first, before anything is asked
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._reader, tg.cancel_scope)
                tg.start_soon(self._writer, tg.cancel_scope)
                tg.start_soon(self._timer)
        finally:
            with anyio.CancelScope(shield=True):
                self._transport_ended()
                await self._channel.aclose()
                self._over = True
                self._finished.set()
                self._signal_progress()

    def _dispatch(self, events: list[Event]) -> None:
        if not events:
            return
        end = events[-1]  # the core ends a batch with ConnectionTerminated, if it came
        if type(end) is ConnectionTerminated and self.termination is None:
            self.termination = end
            level = logging.DEBUG if end.error_code is ErrorCode.NO_ERROR else logging.INFO
            logger.log(level, "connection terminated: %s", end)
        self._on_events(events)
        if self._credit_waiters:
            self._wake_credit_waiters(events)

    def _progress_event(self) -> anyio.Event:
        """The event the next write (or the end) sets."""
        if self._progress is None:
            self._progress = anyio.Event()
        return self._progress

    def _signal_progress(self) -> None:
        event, self._progress = self._progress, None
        if event is not None:
            event.set()

    async def _reader(self, scope: anyio.CancelScope) -> None:
        try:
            pump = getattr(self._channel, "pump", None)
            if pump is not None:
                await pump(self._received)  # a WebSocket: from the socket's callback
            else:
                while (message := await self._channel.receive()) is not None:
                    self._received(message)
        finally:
            self._reader_done.set()
        self._transport_ended()
        scope.cancel()

    def _received(self, message: bytes | str) -> None:
        """Feed one WebSocket message to the core and act on what it says."""
        core = self.core
        if isinstance(message, str):
            events = core.receive_text()
        else:
            events = core.receive_data(message)
        self._dispatch(events)
        if core.output_due():
            self.wake()  # a reply (CREDIT, PONG, GOAWAY) or the close is due
        if core.timer_epoch != self._armed_epoch:
            self._rearm_if_sooner()

    def _transport_ended(self) -> None:
        """The WebSocket is over: say why, unless the core already did. After a graceful
        GOAWAY (either way) with every stream done this is NO_ERROR, whichever task saw
        the end first; otherwise the connection was lost and every stream fails."""
        if self.termination is not None:
            return
        code = getattr(self._channel, "close_code", None) or 1006
        reason = getattr(self._channel, "close_reason", None)
        detail = f": {reason}" if reason else ""  # the TypeScript client's words
        # The core tells a graceful end from a lost connection (Connection.connection_lost).
        self._dispatch(
            self.core.connection_lost(f"the connection was lost (WebSocket {code}){detail}")
        )

    async def _writer(self, scope: anyio.CancelScope) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            try:
                # Drain: frames queued while a send was under way go out too (the last
                # GOAWAY among them) before deciding whether the connection is done.
                while messages := self.core.data_to_send():
                    await self._channel.send(messages)
            except anyio.BrokenResourceError:
                break
            self._signal_progress()
            if self.core.is_finished:
                code = self.core.close_code or 1000
                reason = self.termination.reason if self.termination else ""
                try:
                    await self._channel.close(code, reason)
                except anyio.BrokenResourceError:
                    break
                # Wait for the peer's close frame, unless it is the peer that went silent.
                t = self.termination
                dead_peer = t is not None and t.error_code is ErrorCode.TIMEOUT and not t.remote
                with anyio.move_on_after(0 if dead_peer else self._close_timeout):
                    await self._reader_done.wait()
                break
        scope.cancel()

    def _rearm_if_sooner(self) -> None:
        """Wake the timer when the core's next deadline moved earlier (e.g. after HELLO)."""
        self._armed_epoch = self.core.timer_epoch
        deadline = self.core.next_deadline()
        if deadline is not None and (self._armed is None or deadline < self._armed):
            self._rearm.set()

    async def _timer(self) -> None:
        while True:
            self._armed_epoch = self.core.timer_epoch
            deadline = self._armed = self.core.next_deadline()
            rearm = self._rearm = anyio.Event()
            delay = math.inf if deadline is None else max(deadline - time.monotonic(), 0.0)
            with anyio.move_on_after(delay) as sleeping:
                await rearm.wait()
            if sleeping.cancelled_caught:
                self._dispatch(self.core.tick())
                self.wake()
