"""The client side of the streaming extension: ``mcp_ws.stream_tool(session, name, args)``.

::

    async with mcp_ws.stream_tool(session, "generate", {"prompt": "hi"}) as stream:
        async for event in stream:          # Started, Delta..., then Completed or Failed
            if isinstance(event, mcp_ws.Delta):
                print(event.text, end="")
    result = stream.result                  # the authoritative CallToolResult

Over mcp-ws the call's stream is read directly: deltas never pass through the SDK's
notification queue, and credit goes back to the server only as the caller consumes
them, so a slow consumer slows the producer. Over other transports the deltas come
through the SDK's notification binding (`StreamingExtension`). Leaving the block before
the end cancels the call on the server.

How the deltas find their call: over mcp-ws, the `ToolStream` is the call's route
(`mcp_ws.sdk.calls`), offered to the bridge around ``session.call_tool`` and claimed by
the request that carries its token. Over other transports, the session's binding holds
a `PartialResultRoutes` (token -> stream), which the stream joins while it is open.
Nothing is registered process-wide.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.extension import ClientExtension, NotificationBinding
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ContentBlock, TextContent
from pydantic import BaseModel, ConfigDict, TypeAdapter

from ..protocol.errors import CallCancelledError, McpWsError, ToolCallError
from .bridge import OUTCOME_UNKNOWN
from .calls import routing
from .retained import ATTACH, AttachParams, AttachRequest
from .store import EVENTS_GONE, UNKNOWN_HANDLE
from .streaming import (
    EXTENSION_ID,
    PARTIAL_RESULT,
    Aggregate,
    as_json_safe,
    block_bytes,
    new_token,
    token_of_call,
)

__all__ = [
    "CallCancelledError",
    "Completed",
    "Delta",
    "Failed",
    "PartialResultRoutes",
    "Started",
    "StreamEvent",
    "StreamingExtension",
    "ToolCallError",
    "ToolStream",
    "partial_result_binding",
    "stream_tool",
]

YIELD_INTERVAL = 0.001
"""Seconds the iteration may hand out waiting deltas before it lets other tasks run."""

READ_ON_ATTEMPTS = 8
"""Times a streamed call is read on by its handle, each over a new connection, when the
connections keep being lost and their resumes refused."""

LATE_DELTA_GRACE = 1.0
"""Seconds to wait, on transports without ordering, for deltas the result says were sent."""

_blocks_adapter: TypeAdapter[list[ContentBlock]] = TypeAdapter(list[ContentBlock])

_CLAIMED = ("tools/call", ATTACH)  # the requests whose partial results a stream takes


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """The server began streaming (``seq`` 0); ``meta`` is what it attached, if anything.

    ``handle`` names the call for a re-attach (`mcp_ws.attach`), from any client of the
    same principal, while the server keeps it; ``None`` if the server keeps no calls."""

    meta: Any = None
    handle: str | None = None


@dataclass(frozen=True, kw_only=True)
class Delta:
    """One piece of partial output, in ``seq`` order.

    ``blocks`` are the content blocks as sent (on mcp-ws, binary payloads are raw
    ``bytes``); ``structured`` is a ``structuredContent`` delta, if any.
    """

    seq: int
    blocks: list[dict[str, Any]] = field(default_factory=list)
    structured: Any = None

    @property
    def text(self) -> str:
        """The text of this delta's text blocks."""
        return "".join(str(b.get("text", "")) for b in self.blocks if b.get("type") == "text")

    @property
    def data(self) -> bytes | None:
        """The binary payload of this delta's image, audio or blob blocks, if any."""
        parts = [p for p in (block_bytes(b) for b in self.blocks) if p is not None]
        return b"".join(parts) if parts else None

    @cached_property
    def content(self) -> list[ContentBlock]:
        """The blocks as ``mcp_types`` content models (binary as base64, as MCP has it)."""
        return _blocks_adapter.validate_python([as_json_safe(b) for b in self.blocks])


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """The call succeeded; ``result`` is authoritative and holds the whole aggregate."""

    result: CallToolResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """The call failed: a JSON-RPC error (``MCPError``: cancelled, timeout, connection
    lost, ...), or a tool error (`ToolCallError`, and ``result`` holds its answer)."""

    error: Exception
    result: CallToolResult | None = None


StreamEvent = Started | Delta | Completed | Failed
"""What iterating a `ToolStream` yields."""

_End = tuple[Completed | Failed, int | None]
_Ack = Callable[[int], None] | None
# ("partial", params, stream bytes, how to return them) or ("end", _End, 0, None): each
# delivery returns its credit where it came from (a call sent again after a refusal is
# carried by another stream).
_Delivery = tuple[str, Any, int, _Ack]


class PartialResultRoute:
    """A route (`mcp_ws.sdk.calls.Route`) for the ``tools/call`` carrying ``token``: its
    partial results go to `deliver`, everything else on its stream to the SDK."""

    token: str | int
    _ack: Callable[[int], None] | None

    def claims(self, method: str, params: Mapping[str, Any] | None) -> bool:
        """The ``tools/call`` with this token (or the attach that reads it on)."""
        return method in _CLAIMED and token_of_call(params) == self.token

    def attach(self, acknowledge: Callable[[int], None]) -> None:
        """mcp-ws carries this call; ``acknowledge(size)`` returns credit."""
        self._ack = acknowledge

    def take(self, message: Mapping[str, Any], size: int) -> bool:
        """Keep this call's partial results, leave the rest to the SDK."""
        if message.get("method") != PARTIAL_RESULT:
            return False
        self.deliver(message.get("params"), size)
        return True

    def deliver(self, params: Any, size: int = 0) -> None:
        """A partial result for this call, ``size`` stream bytes owed back once consumed."""
        raise NotImplementedError


class ToolStream(PartialResultRoute):
    """One streaming tool call; get it from `stream_tool` and use ``async with``."""

    def __init__(
        self,
        session: Any,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        read_timeout: float | None,
        meta: Mapping[str, Any] | None,
    ) -> None:
        self.name = name
        self.token = new_token()
        self._session = session
        self._arguments = dict(arguments) if arguments is not None else None
        self._read_timeout = read_timeout
        self._meta = {**(meta or {}), "partialResultToken": self.token}
        self._aggregate = Aggregate()
        self._ack: Callable[[int], None] | None = None  # set when mcp-ws carries the call
        # Created on entry, so a stream that is never entered holds nothing to close.
        self._inbox_send: MemoryObjectSendStream[_Delivery]
        self._inbox: MemoryObjectReceiveStream[_Delivery]
        self._pending: dict[int, tuple[Mapping[str, Any], int, _Ack]] = {}
        self._next_seq = 0
        self._end: _End | None = None
        self._end_deadline = 0.0
        self._yielded_at = -math.inf
        self._outcome: Completed | Failed | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._fallback: PartialResultRoutes | None = None
        self._call_scope: anyio.CancelScope  # created on entry, in the event loop
        self.handle: str | None = None
        """The call's handle (from its `Started`), to re-attach to it with `mcp_ws.attach`."""
        self.last_seq = 0
        """The seq of the last event the iteration yielded (re-attach ``after`` it)."""

    # ------------------------------------------------------------------ for the caller

    @property
    def direct(self) -> bool:
        """Whether mcp-ws carries this call's deltas (stream-level flow control)."""
        return self._ack is not None

    @property
    def text(self) -> str:
        """The text received so far (all text blocks, concatenated)."""
        return self._aggregate.text

    @property
    def outcome(self) -> Completed | Failed | None:
        """The terminal event, once the iteration reached it."""
        return self._outcome

    @property
    def result(self) -> CallToolResult:
        """The final result; raises the failure if the call produced none."""
        outcome = self._outcome
        if outcome is None:
            raise RuntimeError("the call has not finished: iterate the stream to its end first")
        if outcome.result is not None:
            return outcome.result
        assert isinstance(outcome, Failed)
        raise outcome.error

    def cancel(self) -> None:
        """Cancel the call on the server now, and keep the block open.

        The iteration then ends with ``Failed(error=CallCancelledError(...))`` (or the
        terminal event that was already on its way). A ``break`` out of ``async for``
        alone does not cancel: the call is cancelled when the block is left, or here.
        """
        if self._group is None:
            raise RuntimeError("cancel() is for a stream inside its 'async with' block")
        self._call_scope.cancel()

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise RuntimeError("a ToolStream can be entered once")
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[_Delivery](math.inf)
        self._call_scope = anyio.CancelScope()
        self._fallback = _fallback_routes(self._session)
        if self._fallback is not None:
            self._fallback.add(self)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._call)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        self._group.cancel_scope.cancel()  # a call still running is cancelled on the server
        try:
            return await self._group.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            if self._fallback is not None:
                self._fallback.discard(self)
            self._inbox_send.close()
            self._release_unread()
            self._inbox.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        while self._outcome is None:
            ready = self._pending.pop(self._next_seq, None)
            if ready is not None:
                event = self._event(*ready)
                if event is not None:
                    return event
                continue
            if self._end is not None:
                outcome, last_seq = self._end
                late = last_seq is not None and self._next_seq <= last_seq
                remaining = self._end_deadline - anyio.current_time()
                if not late or remaining <= 0 or self.direct:
                    self._outcome = outcome
                    self._release_unread()
                    return outcome
                with anyio.move_on_after(remaining):
                    self._absorb(await self._inbox.receive())
                continue
            self._absorb(await self._next_delivery())
        raise StopAsyncIteration

    async def _next_delivery(self) -> _Delivery:
        """The next delivery: without a trip through the event loop when one is waiting
        (yielding at least every `YIELD_INTERVAL`), else wait for it."""
        if time.monotonic() - self._yielded_at < YIELD_INTERVAL:
            try:
                return self._inbox.receive_nowait()
            except anyio.WouldBlock:
                pass
        item = await self._inbox.receive()
        self._yielded_at = time.monotonic()
        return item

    # ------------------------------------------------------------------ deliveries

    def deliver(self, params: Any, size: int = 0) -> None:
        """A partial result for this call (from its route or the SDK binding)."""
        if self.handle is None and type(params) is dict and params.get("seq") == 0:
            handle = params.get("handle")  # known before the start is read: see _read_on
            self.handle = handle if isinstance(handle, str) else None
        try:
            self._inbox_send.send_nowait(("partial", params, size, self._ack))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            _give_back(size, self._ack)

    def _absorb(self, item: _Delivery) -> None:
        kind, payload, size, ack = item
        if kind == "end":
            self._end = payload
            self._end_deadline = anyio.current_time() + LATE_DELTA_GRACE
            return
        seq = payload.get("seq") if isinstance(payload, Mapping) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < self._next_seq:
            _give_back(size, ack)  # malformed or a duplicate
            return
        self._pending[seq] = (payload, size, ack)

    def _event(self, params: Mapping[str, Any], size: int, ack: _Ack) -> StreamEvent | None:
        _give_back(size, ack)  # consumed: the server may send that much more
        seq = self._next_seq
        self._next_seq += 1
        self.last_seq = seq
        event = partial_event(params, seq)
        if type(event) is Started:
            self.handle = event.handle
            after = params.get("after")  # a re-attach: the events continue after it
            if type(after) is int and after >= self._next_seq:
                self._next_seq = after + 1
                self.last_seq = after
        elif type(event) is Delta:
            try:  # noqa: SIM105 - per delta; contextlib.suppress costs a context manager each
                self._aggregate.add(event.blocks)
            except (ValueError, TypeError):
                pass  # the final result is authoritative; the running text is best effort
            if event.structured is not None:
                self._aggregate.add_structured(event.structured)
        return event

    def _release_unread(self) -> None:
        for _, size, ack in self._pending.values():
            _give_back(size, ack)
        self._pending.clear()
        while True:
            try:
                _, _, size, ack = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            _give_back(size, ack)

    async def _request(self) -> CallToolResult:
        """Send the request whose answer ends the stream; if its connection's resume
        was refused, read the call on by its handle (`_read_on`)."""
        try:
            result: CallToolResult = await self._session.call_tool(
                self.name, self._arguments, read_timeout_seconds=self._read_timeout, meta=self._meta
            )
        except MCPError as exc:
            if exc.error.code != OUTCOME_UNKNOWN or self.handle is None:
                raise
            return await self._read_on(exc)
        return result

    async def _read_on(self, lost: MCPError) -> CallToolResult:
        """The connection that carried the call is gone and its resume was refused, but
        the server may still run (and keep) the call: read it on by its handle, after
        the last event handed out, over the session's new connection (events that came
        twice are dropped by seq); again if that connection is lost the same way, up to
        `READ_ON_ATTEMPTS` times. Fails with ``lost`` if the server no longer has it."""
        for _ in range(READ_ON_ATTEMPTS):
            params = {"handle": self.handle, "after": self._next_seq - 1, "_meta": self._meta}
            request = AttachRequest(params=AttachParams.model_validate(params))
            try:
                result: CallToolResult = await self._session.send_request(
                    request, CallToolResult, request_read_timeout_seconds=self._read_timeout
                )
            except MCPError as exc:
                if exc.error.code in (UNKNOWN_HANDLE, EVENTS_GONE):
                    raise lost from None
                if exc.error.code != OUTCOME_UNKNOWN:
                    raise
                continue  # this connection went the same way: on a new one
            return result
        raise lost

    async def _call(self) -> None:
        outcome: Completed | Failed = Failed(error=CallCancelledError("cancelled by the caller"))
        last_seq: int | None = None
        result: CallToolResult | None = None
        with self._call_scope, routing(self):
            try:
                result = await self._request()
            except (
                MCPError,
                McpWsError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ) as exc:
                outcome = Failed(error=exc)
        if result is not None:
            last_seq = _last_seq(result)
            if result.is_error:
                message = "".join(b.text for b in result.content if isinstance(b, TextContent))
                error = ToolCallError(message or f"tool {self.name!r} failed", result)
                outcome = Failed(error=error, result=result)
            else:
                outcome = Completed(result=result)
        end: _End = (outcome, last_seq)
        self._inbox_send.send_nowait(("end", end, 0, None))


def partial_event(params: Mapping[str, Any], seq: int) -> Started | Delta | None:
    """The event a partial result's ``params`` carry, as the ``seq``-th of its call
    (``None`` for an event this version does not know)."""
    kind = params.get("event")
    if kind == "start":
        handle = params.get("handle")
        return Started(meta=params.get("meta"), handle=handle if isinstance(handle, str) else None)
    if kind != "delta":
        return None
    raw = params.get("content")
    blocks = (
        [b if type(b) is dict else dict(b) for b in raw if isinstance(b, Mapping)]
        if isinstance(raw, list)
        else []
    )
    return Delta(seq=seq, blocks=blocks, structured=params.get("structuredContent"))


def _give_back(size: int, ack: _Ack) -> None:
    """Return ``size`` bytes of credit to the stream that carried them (if mcp-ws did)."""
    if size and ack is not None:
        ack(size)


def _last_seq(result: CallToolResult) -> int | None:
    meta = result.meta or {}
    ours = meta.get(EXTENSION_ID) if isinstance(meta, Mapping) else None
    last = ours.get("lastSeq") if isinstance(ours, Mapping) else None
    return last if isinstance(last, int) and not isinstance(last, bool) else None


def stream_tool(
    target: Any,
    name: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    read_timeout: float | None = None,
    meta: Mapping[str, Any] | None = None,
) -> ToolStream:
    """Call tool ``name`` and stream its partial output (see the module docs).

    ``target`` is a ``ClientSession`` or an ``mcp.Client``. ``read_timeout`` bounds the
    whole call (it then fails with a timeout, and the server is told to cancel).
    Against a server without the extension the stream is a single `Completed`.
    """
    session = getattr(target, "session", target)
    if not callable(getattr(session, "call_tool", None)):
        raise TypeError(f"expected a ClientSession or an mcp.Client, got {type(target).__name__}")
    return ToolStream(session, name, arguments, read_timeout=read_timeout, meta=meta)


class _PartialResultParams(BaseModel):
    model_config = ConfigDict(extra="allow")

    partialResultToken: str | int
    seq: int
    event: str


class PartialResultRoutes:
    """The open `ToolStream`s of one session that receive partial results through the
    SDK (transports other than mcp-ws), by token. Each `partial_result_binding` has one;
    a stream finds it through its session's binding and joins it while open."""

    def __init__(self) -> None:
        self._streams: dict[str | int, ToolStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: ToolStream) -> None:
        """Route partial results carrying ``stream.token`` to ``stream``."""
        self._streams[stream.token] = stream

    def discard(self, stream: ToolStream) -> None:
        """Stop routing ``stream``'s token (a no-op if it is not routed)."""
        if self._streams.get(stream.token) is stream:
            del self._streams[stream.token]

    async def deliver(self, params: _PartialResultParams) -> None:
        """The binding's handler: hand ``params`` to the stream with its token, if open."""
        stream = self._streams.get(params.partialResultToken)
        if stream is not None:
            stream.deliver(params.model_dump())


def _fallback_routes(session: object) -> PartialResultRoutes | None:
    """The routes behind ``session``'s partial-result binding, if it has ours.

    The SDK keeps a session's bindings in ``_notification_bindings`` (method ->
    binding); ours has a `PartialResultRoutes` method as its handler.
    """
    bindings = getattr(session, "_notification_bindings", None)
    binding = bindings.get(PARTIAL_RESULT) if isinstance(bindings, Mapping) else None
    routes = getattr(getattr(binding, "handler", None), "__self__", None)
    return routes if isinstance(routes, PartialResultRoutes) else None


def partial_result_binding() -> NotificationBinding[Any]:
    """The SDK notification binding that routes partial results to `stream_tool` calls.

    Needed on transports other than mcp-ws: ``ClientSession(...,
    notification_bindings=[partial_result_binding()])``, or use `StreamingExtension`
    with ``mcp.Client``. Use one binding per session.
    """
    routes = PartialResultRoutes()
    return NotificationBinding(
        method=PARTIAL_RESULT, params_type=_PartialResultParams, handler=routes.deliver
    )


class StreamingExtension(ClientExtension):
    """``mcp.Client(transport, extensions=[StreamingExtension()])``: advertise the
    extension and receive partial results on any transport."""

    identifier = EXTENSION_ID

    def notifications(self) -> list[NotificationBinding[Any]]:
        """The partial-result binding."""
        return [partial_result_binding()]
