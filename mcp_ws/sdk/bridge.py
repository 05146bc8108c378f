"""JSON-RPC <-> streams: the SDK's two message channels on top of one mux connection.

Role-neutral (docs/protocol.md section 7): a request we send opens a stream of ours, a request
the peer sends arrived on a stream of theirs. Everything said *about* a peer request
(notifications stamped with ``related_request_id``, then the response, with END) goes on
that request's stream; the rest on stream 0. ``notifications/cancelled`` becomes CANCEL
and back. A request that ends without a response because of the peer or the connection
is answered locally, so no caller waits forever.

Writes never wait for one stream's credit: the core queues per stream and the SDK's
writer only waits while the whole connection holds more than ``send_budget`` bytes.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from ..protocol.connection import Role
from ..protocol.constants import ErrorCode
from ..protocol.errors import (
    CallClosedError,
    ConnectionClosedError,
    MessageTooLargeForPeer,
    UsageError,
)
from ..protocol.events import (
    ConnectionTerminated,
    CreditGranted,
    Event,
    GoAwayReceived,
    InvalidMessageReceived,
    MessageReceived,
    StreamCancelled,
    StreamEnded,
    StreamOpened,
)
from ..transport.mux import MuxConnection
from ..transport.tcp import asyncio_loop
from .calls import Call, CallTable, Route, cancelled_request_id, claim_route

__all__ = [
    "DEFAULT_SEND_BUDGET",
    "REQUEST_REFUSED",
    "CallClosedError",
    "Inbox",
    "SessionBridge",
]

logger = logging.getLogger("mcp_ws.sdk")

DEFAULT_SEND_BUDGET = 32 * 1024 * 1024
"""Bytes the connection may hold queued for the peer before the SDK's writer waits."""

CANCEL_ARRIVAL_GRACE = 5.0
"""Seconds a producer of a call the peer cancelled waits for the SDK to cancel it, so
it ends as cancelled rather than with an error logged as a tool failure."""

RELATED_YIELD_INTERVAL = 0.001
"""Seconds a producer writing on a request's stream may run before it lets the writer
send (see `SessionBridge.send_related`)."""

# What kind of message a model is, by its exact class. ``isinstance`` against a pydantic
# model that does not match goes through ``ABCMeta.__instancecheck__`` and the model's
# ``__getattr__`` hook (about a microsecond on CPython 3.11); a subclass of one of these
# is still found by `_kind`'s fallback.
_REQUEST, _NOTIFICATION, _ANSWER = 0, 1, 2
_KINDS: dict[type, int] = {
    JSONRPCRequest: _REQUEST,
    JSONRPCNotification: _NOTIFICATION,
    JSONRPCResponse: _ANSWER,
    JSONRPCError: _ANSWER,
}

REQUEST_REFUSED = -32003
"""JSON-RPC error code for a request the peer cancelled or refused (mcp-ws CANCEL)."""

OUTCOME_UNKNOWN = -32004
"""JSON-RPC error code for a request in flight on a connection that agreed to resume
and could not (refused: the server restarted, or the token expired; or the grace period
ran out): it may or may not have run, and it is not sent again (docs/protocol.md
section 9). The TypeScript client uses the same code."""


class Inbox:
    """Messages for the SDK, from one bridge or from several in turn (a client's
    connections across a handover). Each carries its bridge, stream and size, so that
    taking it returns the credit on the connection it came from.

    Unbounded by itself: what it holds is bounded by the credit the bridges granted.
    A reader that finds it empty waits without first yielding to the event loop (unlike
    an anyio memory stream), which saves a loop step per message on a quiet connection;
    one that finds a message waiting still yields once, so a busy reader lets others run.
    """

    def __init__(self) -> None:
        self._items: deque[_Item] = deque()
        self._waiters: list[anyio.Event | asyncio.Future[None]] = []  # the next put wakes
        self._loop: asyncio.AbstractEventLoop | None = None  # None on trio
        self._loop_known = False
        self._ended = False  # no more puts: readers get what is left, then EndOfStream
        self._closed = False  # nobody reads: readers get ClosedResourceError

    def put(
        self, item: SessionMessage | Exception, bridge: SessionBridge | None, sid: int, size: int
    ) -> None:
        """Queue ``item`` (never blocks); once ended or closed, its credit goes straight
        back and the item is dropped."""
        if self._ended or self._closed:
            if bridge is not None:
                bridge._acknowledge(sid, size)
            return
        self._items.append((item, bridge, sid, size))
        if self._waiters:  # `_wake`'s own check, without the call when nobody waits
            self._wake()

    async def get(self) -> SessionMessage | Exception:
        """The next message; raises ``anyio.EndOfStream`` once `end` was called and
        everything before it was taken, ``anyio.ClosedResourceError`` after `close`.

        An empty inbox is waited on here, not in a helper coroutine (one less per
        message): on asyncio with a bare future, since an anyio event finds its backend
        and builds an asyncio event, then a future, every time. Each reader waits on its
        own (a cancelled reader cancels only its own wait)."""
        if self._items and not self._closed:
            await anyio.lowlevel.checkpoint()
        while not self._items or self._closed:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._ended:
                raise anyio.EndOfStream
            if not self._loop_known:  # looked up once: anyio's lookup costs more than a wait
                self._loop, self._loop_known = asyncio_loop(), True
            waiter: anyio.Event | asyncio.Future[None]
            if self._loop is None:
                event = waiter = anyio.Event()
                put: Awaitable[object] = event.wait()
            else:
                waiter = put = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await put
            finally:
                if waiter in self._waiters:  # cancelled before a put came
                    self._waiters.remove(waiter)
        item, bridge, sid, size = self._items.popleft()
        if bridge is not None:
            bridge._acknowledge(sid, size)
        return item

    def end(self) -> None:
        """No more messages will come."""
        self._ended = True
        self._wake()

    def close(self) -> None:
        """Nobody reads any more: what is queued is dropped, its credit given back."""
        self._closed = True
        while self._items:
            _, bridge, sid, size = self._items.popleft()
            if bridge is not None:
                bridge._acknowledge(sid, size)
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(waiter, anyio.Event):
                waiter.set()
            elif not waiter.done():
                waiter.set_result(None)


# message, the bridge it came from (None: answered locally), its stream, bytes to ack
_Item = tuple[SessionMessage | Exception, "SessionBridge | None", int, int]


class SessionBridge:
    """Routes the SDK's messages over a `MuxConnection` (client or server side).

    ``inbox``: where messages for the SDK go, when several bridges share one (see
    `Inbox`); the bridge then leaves ending it to its owner. ``on_goaway`` is called
    when the peer sends a graceful GOAWAY. ``retry``, when given, receives each request
    (with its route, if it had one)
    of ours the peer refused unprocessed (REFUSED_STREAM, or a GOAWAY that came first),
    instead of the SDK getting an error for it: it was never processed, so it is safe to
    send again on another connection. ``on_closed`` is called once the connection is
    gone, before the peer's requests are cancelled; ``on_peer_cancel`` with the id of each
    request of the peer's that the peer cancelled (its CANCEL, or a
    ``notifications/cancelled``), as it arrives.
    """

    def __init__(
        self,
        role: Role,
        *,
        send_budget: int = DEFAULT_SEND_BUDGET,
        inbox: Inbox | None = None,
        on_goaway: Callable[[SessionBridge], None] | None = None,
        retry: Callable[[JSONRPCRequest, Route | None], None] | None = None,
        on_closed: Callable[[], None] | None = None,
        on_peer_cancel: Callable[[RequestId], None] | None = None,
    ) -> None:
        self.role = role
        self.on_closed = on_closed
        self.on_peer_cancel = on_peer_cancel
        self._server = role is Role.SERVER  # asked per message
        self.send_budget = send_budget
        self.mux: MuxConnection | None = None
        self._owns_inbox = inbox is None
        self.inbox = inbox or Inbox()
        self._on_goaway = on_goaway
        self._retry = retry
        self.calls = CallTable()
        self._slot_waiters: deque[anyio.Event] = deque()  # requests waiting for max_streams
        self._budget_lock = anyio.Lock()
        self._over_budget = 0  # writers in (or waiting for) the lock below
        self._related_yield_at = -math.inf
        self._closed = False
        self.read_stream = BridgeReadStream(self.inbox, lambda: self)
        self.write_stream = BridgeWriteStream(self.send)

    def attach(self, mux: MuxConnection) -> None:
        """Bind to the connection whose events `on_events` receives."""
        self.mux = mux

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (or the bridge released)."""
        return self._closed

    @property
    def _core_mux(self) -> MuxConnection:
        assert self.mux is not None, "attach() the bridge to a MuxConnection first"
        return self.mux

    # ------------------------------------------------------------------ wire -> SDK

    def on_events(self, events: list[Event]) -> None:
        """Handle a batch of core events (called by the pump; never blocks)."""
        for event in events:
            # The common events first, by identity (cheaper than isinstance, several
            # times per message); events are final classes.
            if type(event) is MessageReceived:
                self._received(event)
            elif type(event) is StreamEnded:
                self._ended(event.stream_id)
            elif type(event) is StreamOpened or type(event) is CreditGranted:
                continue
            elif isinstance(event, StreamCancelled):
                self._cancelled(event)
            elif isinstance(event, ConnectionTerminated):
                self._terminated()
            elif isinstance(event, InvalidMessageReceived):
                logger.warning("dropped a message on stream %d: %s", event.stream_id, event.reason)
            elif isinstance(event, GoAwayReceived):
                logger.debug("the peer is going away: %s", event.reason or "no reason given")
                if self._on_goaway is not None:
                    self._on_goaway(self)
        if self._slot_waiters:
            self._wake_slot_waiters()

    def _wake_slot_waiters(self) -> None:
        """Let as many waiting requests go as there are free stream slots (all at the end)."""
        if not self._slot_waiters:
            return
        mux = self.mux
        if mux is None or self._closed or not mux.accepting_streams:
            free = len(self._slot_waiters)  # the end: everyone gets their answer
        else:
            free = mux.stream_slots
        for _ in range(min(free, len(self._slot_waiters))):
            self._slot_waiters.popleft().set()

    def _deliver(self, item: SessionMessage | Exception, sid: int = 0, size: int = 0) -> None:
        self.inbox.put(item, self, sid, size)

    def _received(self, event: MessageReceived) -> None:
        sid, size = event.stream_id, event.flow_controlled_length
        call = self.calls.on_stream(sid) if sid else None
        if call is not None and call.route is not None and call.route.take(event.message, size):
            # The call's route took it (and acknowledges it when consumed); an answer
            # ends the call.
            if call.ours and "method" not in event.message:
                self.calls.remove(call)
            return
        try:
            # Any: its kind, found below, says which attributes it has (a cast costs a
            # call of typing.cast at run time).
            message: Any = validate_message(event.message)
        except ValidationError as exc:
            self._deliver(ValueError(f"invalid JSON-RPC message on stream {sid}: {exc}"), sid, size)
            return
        kind = _kind(message)
        metadata = None
        if kind == _REQUEST and sid:
            if call is None:
                rid = message.id
                if self.calls.peer(rid) is not None:
                    self._core_mux.cancel(
                        sid, ErrorCode.PROTOCOL_ERROR, f"request id {rid!r} is in flight"
                    )
                    return
                self.calls.add(Call(rid, sid, False))  # theirs (see Call: by position)
            if self._server:
                metadata = ServerMessageMetadata(on_request_unanswered=self._unanswered_hook(sid))
        elif kind == _ANSWER and call is not None and call.ours and call.request_id == message.id:
            self.calls.remove(call)
        elif kind == _NOTIFICATION and self.on_peer_cancel is not None:
            rid = cancelled_request_id(message)  # a JSON cancel, not a CANCEL frame
            if rid is not None:
                self.on_peer_cancel(rid)
        # By position (message, metadata), as for Call.
        self.inbox.put(SessionMessage(message, metadata), self, sid, size)

    def _unanswered_hook(self, sid: int) -> Callable[[], Awaitable[None]]:
        async def unanswered() -> None:
            call = self.calls.on_stream(sid)
            if call is not None and not call.ours:
                self.calls.remove(call)
                self._core_mux.cancel(sid, ErrorCode.CANCELLED, "request not answered")

        return unanswered

    def _cancelled(self, event: StreamCancelled) -> None:
        call = self.calls.on_stream(event.stream_id)
        if call is None:
            return
        self.calls.remove(call)
        refused = event.remote and event.error_code is ErrorCode.REFUSED_STREAM
        if call.ours and refused and self._retry is not None and call.request is not None:
            # Never processed: safe to send again elsewhere, with its route.
            self._retry(call.request, call.route)
            return
        if call.ours:
            who = "the peer" if event.remote else "mcp-ws"
            detail = f": {event.reason}" if event.reason else ""
            self._answer_locally(
                call.request_id,
                REQUEST_REFUSED,
                f"request cancelled by {who} ({event.error_code.name}){detail}",
                call,
            )
        else:
            if event.remote and self.on_peer_cancel is not None:
                self.on_peer_cancel(call.request_id)
            self._cancel_peer_request(call.request_id, event.reason)

    def _cancel_peer_request(self, rid: RequestId, reason: str) -> None:
        """Tell the SDK the peer cancelled ``rid`` (``notifications/cancelled``)."""
        self.calls.note_cancelled(rid)
        params: dict[str, Any] = {"requestId": rid}
        if reason:
            params["reason"] = reason
        note = JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params=params)
        self._deliver(SessionMessage(message=note))

    def _ended(self, sid: int) -> None:
        call = self.calls.on_stream(sid)
        if call is not None and call.ours:  # END without a response
            self.calls.remove(call)
            self._answer_locally(
                call.request_id,
                REQUEST_REFUSED,
                "the peer ended the request without answering",
                call,
            )

    def _terminated(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.on_closed is not None:
            self.on_closed()
        mux = self._core_mux
        error = mux.closed_error()
        code, text = CONNECTION_CLOSED, str(error)
        if mux.termination is not None and mux.termination.session_lost:
            code, text = OUTCOME_UNKNOWN, f"outcome unknown: {mux.termination.reason}"
        # Our requests are answered with the loss. The peer's end as if it had cancelled
        # each one: the SDK cancels their handlers (a producer waiting in send_related
        # ends cancelled, not with an error logged as a tool failure) and writes no
        # answer to a connection that is gone.
        for call in self.calls.clear():
            if call.ours:
                self._answer_locally(call.request_id, code, text, call)
            else:
                self._cancel_peer_request(call.request_id, "the connection was lost")
        if self._owns_inbox:
            self.inbox.end()

    def _answer_locally(
        self, rid: RequestId, code: int, message: str, call: Call | None = None
    ) -> None:
        """Answer our request ``rid`` with an error (to its route, if it has one that
        takes answers, else to the SDK)."""
        error = JSONRPCError(jsonrpc="2.0", id=rid, error=ErrorData(code=code, message=message))
        if call is not None and call.route is not None and call.route.take(_dump(error), 0):
            return
        self._deliver(SessionMessage(message=error))

    # ------------------------------------------------------------------ SDK -> wire

    async def send(self, item: SessionMessage) -> None:
        """Route one message from the SDK; waits only on the connection-wide budget, and
        a request for a stream slot."""
        mux = self.mux
        assert mux is not None, "attach() the bridge to a MuxConnection first"
        if self._over_budget or mux.buffered() > self.send_budget:
            # Over budget: writers queue up here, one at a time, so the connection
            # holds at most the budget plus one message.
            self._over_budget += 1
            try:
                async with self._budget_lock:
                    await mux.wait_sent(self.send_budget)
                    if (request := self._route(item, mux)) is not None:
                        await self._send_after_slot(request, mux)
            finally:
                self._over_budget -= 1
        elif (request := self._route(item, mux)) is not None:
            await self._send_after_slot(request, mux)

    def _route(self, item: SessionMessage, mux: MuxConnection) -> JSONRPCRequest | None:
        """Send ``item`` now, unless it is a request that must wait for a stream slot:
        that request is returned (only a request may wait; the rest is synchronous)."""
        if self._closed or mux.closed:
            raise anyio.BrokenResourceError("the mcp-ws connection is closed")
        message: Any = item.message  # Any: its kind says which model it is (no cast calls)
        kind = _kind(message)
        if kind == _REQUEST:
            if not mux.stream_slots:
                return message  # type: ignore[no-any-return]
            self._send_request(message, mux)
        elif kind == _NOTIFICATION:
            self._send_notification(message, item.metadata, mux)
        else:
            self._send_response(message, mux)
        return None

    async def _send_after_slot(self, request: JSONRPCRequest, mux: MuxConnection) -> None:
        await self._wait_for_slot(mux)
        self._send_request(request, mux)

    async def _wait_for_slot(self, mux: MuxConnection) -> None:
        """While the peer's max_streams is reached, wait in line for a slot (FIFO, and
        one wake-up per freed slot rather than every waiter on every event)."""
        while mux.stream_slots == 0 and mux.accepting_streams:
            turn = anyio.Event()
            self._slot_waiters.append(turn)
            try:
                await turn.wait()
            except BaseException:
                if turn.is_set():
                    self._wake_slot_waiters()  # pass the freed slot on
                else:
                    self._slot_waiters.remove(turn)
                raise

    def _send_request(self, message: JSONRPCRequest, mux: MuxConnection) -> None:
        # The id, method and params are read from the dumped dict: a pydantic model's
        # attributes go through its ``__getattr__`` hook, a dict lookup does not.
        payload = _dump(message)
        try:
            # A lone call is written from this task, a task hop sooner; with others in
            # flight the writer coalesces it with theirs (fewer, larger writes).
            alone = len(self.calls) == 0
            sid = mux.open_stream(payload, end=True, deferred=alone)
        except ConnectionClosedError:
            # It waited for a slot and the connection ended meanwhile: the same failure
            # as the calls already sent, which the SDK reports as CONNECTION_CLOSED.
            raise anyio.BrokenResourceError(str(mux.closed_error())) from None
        except MessageTooLargeForPeer as exc:
            self._answer_locally(message.id, REQUEST_REFUSED, str(exc))
            return
        except UsageError as exc:
            if self._retry is not None and not mux.accepting_streams:
                # The peer's GOAWAY came first: not sent at all.
                self._retry(message, claim_route(message.method, message.params))
                return
            self._answer_locally(message.id, REQUEST_REFUSED, f"request not sent: {exc}")
            return
        route = claim_route(payload["method"], payload.get("params"))
        request = message if self._retry is not None else None
        self.calls.add(Call(payload["id"], sid, True, route, request))  # ours
        if route is not None:
            route.attach(lambda size: self._acknowledge(sid, size))
        if alone:
            mux.write_now()

    def _send_notification(
        self, message: JSONRPCNotification, metadata: object, mux: MuxConnection
    ) -> None:
        if message.method == "notifications/cancelled" and message.params:
            call = self.calls.own(message.params.get("requestId"))
            if call is not None:
                self.calls.remove(call)
                reason = str(message.params.get("reason") or "")
                mux.cancel(call.stream_id, ErrorCode.CANCELLED, reason)
                return
        sid = 0
        if isinstance(metadata, ServerMessageMetadata):
            related = self.calls.peer(metadata.related_request_id)
            sid = related.stream_id if related is not None else 0
        try:
            mux.send(sid, _dump(message))
        except UsageError as exc:
            logger.debug("dropped %s on stream %d: %s", message.method, sid, exc)

    def _send_response(self, message: JSONRPCResponse | JSONRPCError, mux: MuxConnection) -> None:
        payload = _dump(message)
        call = self.calls.peer(payload["id"])  # as for requests: the dict, not the model
        if call is None:
            logger.debug("dropped the response to %r: the request is gone", message.id)
            return
        self.calls.remove(call)
        sid = call.stream_id
        alone = len(self.calls) == 0  # as for requests: written here, or coalesced
        try:
            mux.send(sid, payload, end=True, deferred=alone)
        except MessageTooLargeForPeer as exc:
            error = JSONRPCError(
                jsonrpc="2.0",
                id=message.id,
                error=ErrorData(code=-32603, message=f"result not sent: {exc}"),
            )
            mux.send(sid, _dump(error), end=True, deferred=alone)
        except UsageError as exc:
            logger.debug("dropped the response to %r: %s", message.id, exc)
            return
        if alone:
            mux.write_now()

    # ------------------------------------------------------------------ a request's stream

    async def send_related(
        self,
        request_id: RequestId,
        message: dict[str, Any],
        *,
        urgent: bool = False,
        wait_for_cancel: bool = True,
    ) -> None:
        """Queue ``message`` on the stream of the peer's request ``request_id``, with
        that stream's flow control (the streaming extension's deltas go this way).

        ``urgent`` waits until the writer has handed it to the socket (no coalescing).

        Waits for that stream's credit only (at most one message beyond the window is
        ever queued), never for the connection's other streams. Raises
        `CallClosedError` once the request is answered. Once the peer cancelled it or
        the connection is gone, waits (at most `CANCEL_ARRIVAL_GRACE`) to be cancelled;
        with ``wait_for_cancel=False``, a connection that is gone raises at once (a call
        that outlives its session, `mcp_ws.sdk.retained`).
        """
        mux = self._core_mux
        while True:
            call = self.calls.peer(request_id) if not self._closed else None
            if call is None or mux.closed:
                if not wait_for_cancel and self._closed:
                    raise CallClosedError(f"request {request_id!r}: the connection is gone")
                if self._closed or self.calls.cancelled(request_id):
                    # The peer's cancel (or the connection's loss, which ends every
                    # handler) is on its way to the SDK: let it cancel this handler,
                    # instead of failing it with an error logged as a tool failure.
                    with anyio.move_on_after(CANCEL_ARRIVAL_GRACE):
                        await anyio.sleep_forever()
                raise CallClosedError(f"request {request_id!r} is no longer open")
            if mux.credit(call.stream_id) > 0:
                break
            await mux.wait_credit(call.stream_id)  # this stream's credit (or end) wakes it
        try:
            mux.send(call.stream_id, message)
        except UsageError as exc:
            raise CallClosedError(f"request {request_id!r}: {exc}") from None
        if urgent:
            # Not just a yield: on trio the writer may run after this task's next step.
            self._related_yield_at = anyio.current_time()
            await mux.flush()
            return
        # A cancelled producer always stops here. It also yields to the writer at least
        # every RELATED_YIELD_INTERVAL: a fast producer's messages are coalesced into few
        # WebSocket messages in between.
        now = anyio.current_time()
        if now - self._related_yield_at >= RELATED_YIELD_INTERVAL:
            self._related_yield_at = now
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()

    def _acknowledge(self, sid: int, size: int) -> None:
        if not size or self.mux is None:
            return
        self.mux.acknowledge(sid, size)
        if self._slot_waiters:
            self._wake_slot_waiters()  # a stream read to its end gives its slot back

    def cancel_all(self, reason: str) -> None:
        """Cancel every stream still open (we are leaving)."""
        mux = self._core_mux
        for call in self.calls.clear():
            mux.cancel(call.stream_id, ErrorCode.CANCELLED, reason)

    def close(self) -> None:
        """Release the inbox, if it is this bridge's own (the connection and the SDK are
        both done with it)."""
        self._closed = True
        if self._owns_inbox:
            self.inbox.close()


def _kind(message: JSONRPCMessage) -> int:
    """`_REQUEST`, `_NOTIFICATION` or `_ANSWER` (a response or an error)."""
    kind = _KINDS.get(type(message))
    if kind is not None:
        return kind
    if isinstance(message, JSONRPCRequest):
        return _REQUEST
    return _NOTIFICATION if isinstance(message, JSONRPCNotification) else _ANSWER


# Each model's serializer and validator, looked up once: reached through the class they
# cost a call of pydantic's metaclass ``__getattr__`` hook per message.
_TO_PYTHON: dict[type, Callable[..., Any]] = {}
_VALIDATE: dict[type, Callable[..., Any]] = {}


def _dump(message: JSONRPCMessage) -> dict[str, Any]:
    # What ``model_dump`` returns, without its keyword handling in Python on every message.
    cls = type(message)
    dump = _TO_PYTHON.get(cls)
    if dump is None:
        dump = _TO_PYTHON[cls] = cls.__pydantic_serializer__.to_python
    return dump(message, by_alias=True, mode="json", exclude_unset=True)  # type: ignore[no-any-return]


def validate_message(obj: dict[str, Any]) -> JSONRPCMessage:
    """``jsonrpc_message_adapter.validate_python(obj)``, at less than half its cost.

    The SDK's union tries every kind of message and keeps the best match. When the keys
    say which kind a message is (``method``, or else one of ``result`` and ``error``),
    that model alone validates it; a message the keys leave in doubt, or that its model
    rejects, goes to the union, which gives the same result, or the same error, as it
    always did. Raises ``ValidationError``.
    """
    answer = ("result" in obj) + ("error" in obj)
    model: type[JSONRPCMessage] | None = None
    if "method" in obj:
        if not answer:
            model = JSONRPCRequest if "id" in obj else JSONRPCNotification
    elif answer == 1:
        model = JSONRPCResponse if "result" in obj else JSONRPCError
    if model is None:
        return jsonrpc_message_adapter.validate_python(obj, by_name=False)
    validate = _VALIDATE.get(model)
    if validate is None:
        validate = _VALIDATE[model] = model.__pydantic_validator__.validate_python
    try:
        return validate(obj, by_name=False)  # type: ignore[no-any-return]
    except ValidationError:
        return jsonrpc_message_adapter.validate_python(obj, by_name=False)


class _ClosedOnExit:
    """``async with stream:`` closes it on the way out."""

    async def aclose(self) -> None:
        """Release the stream."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BridgeReadStream(_ClosedOnExit):
    """The SDK's read stream (`mcp.shared._stream_protocols.ReadStream`) over an `Inbox`:
    one bridge's, or the one the bridges of a handover share."""

    def __init__(self, inbox: Inbox, current: Callable[[], SessionBridge | None]) -> None:
        self.inbox = inbox
        self._current = current

    @property
    def bridge(self) -> SessionBridge | None:
        """The bridge new requests go to (``None`` between connections of a handover)."""
        return self._current()

    async def receive(self) -> SessionMessage | Exception:
        """The next message (taking it returns its credit); raises ``anyio.EndOfStream``
        once no more will come."""
        return await self.inbox.get()

    async def aclose(self) -> None:
        """Stop reading (messages still queued are acknowledged and dropped)."""
        self.inbox.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.inbox.get()  # what `receive` does, one coroutine less
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None


class BridgeWriteStream(_ClosedOnExit):
    """The SDK's write stream (`mcp.shared._stream_protocols.WriteStream`): each message
    goes to ``route`` (a bridge's `SessionBridge.send`, or a handover's)."""

    def __init__(self, route: Callable[[SessionMessage], Awaitable[None]]) -> None:
        self._route = route
        self.closed = False

    async def send(self, item: SessionMessage, /) -> None:
        """Route ``item``; raises ``anyio.ClosedResourceError`` after `aclose`."""
        if self.closed:
            raise anyio.ClosedResourceError
        await self._route(item)

    async def aclose(self) -> None:
        """No more writes from the SDK."""
        self.closed = True
