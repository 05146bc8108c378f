"""The I/O pump: drives a sans-I/O `Connection` over a `MessageChannel` with anyio.

Three tasks per connection, all in one task group:

- the **reader** feeds every received WebSocket message to the core and hands the
  resulting events to the application callback (on asyncio's TCP stream this runs in
  the socket's own callback, see `WebSocket.pump`, and the task only waits);
- the **writer** sleeps until woken, then sends everything ``data_to_send`` returns in
  one write (control frames first, queued data round-robin within credit, coalesced);
- the **timer** runs the core's timers (HELLO timeout, keepalive PING, dead peer).

**Resume** (docs/protocol.md section 9). When both sides agreed to resume and the link
drops without a closing handshake (or the peer goes silent), the connection is not over:
the core is suspended (streams, windows and queued messages kept), ``relink`` waits for a
new WebSocket (a client dials again, a server waits for its client within the grace
period), and the three tasks start again over it. The layer above sees nothing but
``on_link`` calls; only when the grace runs out or the resume is refused does the
connection end, with ``session_lost`` set on its `ConnectionTerminated`.

The layer above never touches the core: it uses the stream verbs here (`open_stream`,
`send`, `cancel`, `acknowledge`, `wait_credit`), each of which wakes the writer
itself, as websockets' connection does with its send context. Producers blocked on
credit wait for their own stream only.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
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
    LinkLost,
    Resumed,
    StreamCancelled,
    StreamEnded,
)
from ..protocol.limits import Limits
from ..protocol.resume import ResumeHello
from ..protocol.settings import Settings
from .websocket import MessageChannel

__all__ = ["RESUME_ANSWER_TIMEOUT", "LinkState", "MuxConnection", "Relink"]

logger = logging.getLogger("mcp_ws.transport")

EventHandler = Callable[[list[Event]], None]

RESUME_ANSWER_TIMEOUT = 10.0
"""Seconds a client waits for the server's answer to its resume before it tries a new
link (as long as the grace period lasts)."""


class LinkState(enum.Enum):
    """What ``on_link`` is told about a connection that can resume."""

    RECOVERING = "recovering"
    """The link dropped; the connection is being resumed over a new one."""
    RECOVERED = "recovered"
    """Resumed: nothing was lost."""
    LOST = "lost"
    """Resume failed (refused, or the grace period ran out): the connection is over."""


Relink = Callable[["MuxConnection", float], Awaitable["MessageChannel | None"]]
"""Finds a new link for a suspended connection before a deadline (``anyio.current_time``
clock), or returns ``None``. A client's dials the server again; a server's waits for
`MuxConnection.adopt`."""

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
        resume: ResumeHello | None = None,
        relink: Relink | None = None,
        on_link: Callable[[LinkState], None] | None = None,
        grace: float | None = None,
    ) -> None:
        self.core = Connection(role, settings, limits=limits, resume=resume)
        self.termination: ConnectionTerminated | None = None
        self.resumes = 0
        """How many times the connection resumed over a new link."""
        self._relink = relink
        self._on_link = on_link
        self._grace = grace  # a server's own; a client takes the server's from its HELLO
        self._give_up = anyio.Event()  # set by `close` while suspended
        self._adoption: anyio.Event | None = None  # a server waiting in `adopt`
        self._adopted: MessageChannel | None = None
        self._link_done = anyio.Event()
        self._link_scope: anyio.CancelScope | None = None  # the current link's tasks
        self._waiting = anyio.Event()  # set while a server waits in `wait_adoption`
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
        """GOAWAY: graceful (streams finish, then close 1000) or, with an error, at once.
        A connection waiting to resume ends at once (its link is gone)."""
        self.core.close(error_code, reason)
        self._give_up.set()
        self.wake()

    @property
    def suspended(self) -> bool:
        """The link dropped and the connection waits to resume over a new one."""
        return self.core.suspended

    async def adopt(
        self,
        channel: MessageChannel,
        received: int,
        token: str,
        accepted: Callable[[], None] | None = None,
    ) -> None:
        """A server: carry on over ``channel``, whose client asked to resume with its
        position ``received`` (raises ``ProtocolError`` if it is not one we can
        honour, ``anyio.BrokenResourceError`` if the connection is not waiting for a
        link). ``accepted`` is called once the resume is accepted, before anything
        arrives on the new link. Returns when that link is over."""
        if self._adoption is None and not self._over and self._link_scope is not None:
            # The client is back before we saw its old link end: that link is dead.
            self._link_scope.cancel()
            with anyio.move_on_after(RESUME_ANSWER_TIMEOUT):
                await self._waiting.wait()
        waiting = self._adoption
        if waiting is None or not self.core.suspended or self._adopted is not None:
            raise anyio.BrokenResourceError("this connection is not waiting to resume")
        self.core.resume_accepted(received, token=token)
        if accepted is not None:
            accepted()
        self._adopted = channel
        done = self._link_done = anyio.Event()
        waiting.set()
        await done.wait()

    # ------------------------------------------------------------------ the pump

    async def run(self, first: bytes | str | None = None) -> None:
        """Pump until the connection ends; never raises for the peer's misbehaviour.
        ``first``: a message already read from the channel (a server reads the first
        one itself, to tell a resume from a new connection)."""
        try:
            while True:
                await self._pump_link(first)
                first = None
                if self.termination is None and not self.core.suspended:
                    self._link_ended()
                if not self.core.suspended:
                    break
                channel = await self._next_link()
                if channel is None:
                    self._dispatch(self.core.connection_lost("no resume within the grace period"))
                    break
                self._channel = channel
        finally:
            with anyio.CancelScope(shield=True):
                self._transport_ended()
                await self._channel.aclose()
                self._link_done.set()
                self._over = True
                self._finished.set()
                self._signal_progress()
                t = self.termination
                if t is not None and t.session_lost and self._on_link is not None:
                    self._on_link(LinkState.LOST)

    async def _pump_link(self, first: bytes | str | None) -> None:
        """Run the reader, writer and timer over the current link until it ends."""
        self._reader_done = anyio.Event()
        self.wake()  # our HELLO (or a resume's) is queued: it goes out first
        if first is not None:
            self._received(first)
        async with anyio.create_task_group() as tg:
            self._link_scope = tg.cancel_scope
            tg.start_soon(self._reader, tg.cancel_scope)
            tg.start_soon(self._writer, tg.cancel_scope)
            tg.start_soon(self._timer, tg.cancel_scope)
            if self.core.suspended:  # a client's resume is out: its answer must come
                tg.start_soon(self._answer_deadline, tg.cancel_scope)

    async def _answer_deadline(self, scope: anyio.CancelScope) -> None:
        await anyio.sleep(RESUME_ANSWER_TIMEOUT)
        if self.core.suspended:
            logger.info("no answer to the resume in %.0f s: a new link", RESUME_ANSWER_TIMEOUT)
            scope.cancel()

    def _link_ended(self) -> None:
        """The link is over: a drop without a closing handshake suspends a connection
        that can resume; anything else ends it (`_transport_ended`)."""
        if self.termination is not None or self.core.suspended:
            return
        code = getattr(self._channel, "close_code", None)
        core = self.core
        # 1006: no close frame; 1005: no code in it, which is also what some ASGI servers
        # (uvicorn) report for a dropped connection. A peer that means to leave says why.
        if self._relink is not None and core.resumable and code in (None, 1005, 1006):
            if core.is_finished:  # after a graceful GOAWAY with every stream done
                self._transport_ended()
                return
            logger.info("the link dropped: resuming")
            self.core.suspend()
            if self._on_link is not None:
                self._on_link(LinkState.RECOVERING)
            return
        self._transport_ended()

    async def _next_link(self) -> MessageChannel | None:
        """A new link for the suspended connection, before its grace period runs out;
        ``None`` if there is none (or `close` was called)."""
        assert self._relink is not None
        with anyio.CancelScope(shield=True):
            await self._channel.aclose()
        grace = self._grace if self._grace is not None else self.core.resume_grace
        deadline = anyio.current_time() + (grace or 0)
        found: MessageChannel | None = None
        async with anyio.create_task_group() as tg:

            async def relink() -> None:
                nonlocal found
                assert self._relink is not None
                found = await self._relink(self, deadline)
                tg.cancel_scope.cancel()

            async def give_up() -> None:
                await self._give_up.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(relink)
            tg.start_soon(give_up)
        if self._give_up.is_set() or found is None:
            if found is not None:
                await found.aclose()
            return None
        if self.core.role is Role.CLIENT:
            self.core.begin_resume()
        return found

    async def wait_adoption(self, deadline: float) -> MessageChannel | None:
        """A server's `Relink`: wait for `adopt` until ``deadline``."""
        self._link_done.set()  # the previous link's `adopt` returns
        event = self._adoption = anyio.Event()
        self._waiting.set()
        try:
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
                await event.wait()
        finally:
            self._adoption = None
            self._waiting = anyio.Event()
        channel, self._adopted = self._adopted, None
        return channel

    def _dispatch(self, events: list[Event]) -> None:
        if not events:
            return
        end = events[-1]  # the core ends a batch with ConnectionTerminated, if it came
        if type(end) is ConnectionTerminated and self.termination is None:
            self.termination = end
            level = logging.DEBUG if end.error_code is ErrorCode.NO_ERROR else logging.INFO
            logger.log(level, "connection terminated: %s", end)
        elif type(end) is Resumed or type(events[0]) is Resumed:
            self.resumes += 1
            logger.info(
                "resumed (%d frames sent again)",
                sum(e.resent for e in events if type(e) is Resumed),
            )
            if self._on_link is not None:
                self._on_link(LinkState.RECOVERED)
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
        self._link_ended()
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

    async def _timer(self, scope: anyio.CancelScope) -> None:
        while True:
            self._armed_epoch = self.core.timer_epoch
            deadline = self._armed = self.core.next_deadline()
            rearm = self._rearm = anyio.Event()
            delay = math.inf if deadline is None else max(deadline - time.monotonic(), 0.0)
            with anyio.move_on_after(delay) as sleeping:
                await rearm.wait()
            if sleeping.cancelled_caught:
                events = self.core.tick()
                self._dispatch(events)
                if events and type(events[0]) is LinkLost:
                    if self._on_link is not None:
                        self._on_link(LinkState.RECOVERING)
                    scope.cancel()  # drop this link: the connection resumes on another
                    return
                self.wake()
