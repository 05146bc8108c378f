"""Subprotocol ``mcp``: one JSON-RPC message per WebSocket text message, no mux.

This is what SDK 1.x ``websocket_client``/``websocket_server`` and supergateway speak;
both our client (fallback) and our server accept it. A ``stream_tool`` call made over it
gets its partial results as over ``mcp-ws.v1`` (without stream credit, which JSON text
does not have): the request registers the call's route as it is sent, and the reader
hands the call's ``notifications/tools/partial_result`` to it instead of the SDK, as the
TypeScript client does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from ..transport.websocket import MessageChannel
from .bridge import _ClosedOnExit
from .calls import CANCELLED, Route, cancelled_request_id, claim_route
from .streaming import PARTIAL_RESULT, token_of_call

__all__ = ["json_text_streams"]

_READ_AHEAD = 32  # messages; beyond that the socket is not read (TCP backpressure)


@asynccontextmanager
async def json_text_streams(
    channel: MessageChannel,
    *,
    close_timeout: float = 5.0,
    on_end: Callable[[], None] | None = None,
    on_cancel: Callable[[RequestId], None] | None = None,
) -> AsyncIterator[tuple[MemoryObjectReceiveStream[SessionMessage | Exception], _RoutingWriter]]:
    """Yield the SDK's ``(read_stream, write_stream)`` over a JSON-text WebSocket;
    ``on_end`` is called when the connection ends, before the read stream does, and
    ``on_cancel`` with the request id of each ``notifications/cancelled`` the peer sends,
    as it arrives (before the SDK sees it)."""
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](
        _READ_AHEAD
    )
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](_READ_AHEAD)
    routes = _Routes()

    async def reader() -> None:
        async with read_send:
            while (data := await channel.receive()) is not None:
                try:
                    message = jsonrpc_message_adapter.validate_json(data, by_name=False)
                except ValidationError as exc:
                    await read_send.send(ValueError(f"invalid JSON-RPC message: {exc}"))
                    continue
                if routes.take(message):
                    continue
                if on_cancel is not None and (rid := cancelled_request_id(message)) is not None:
                    on_cancel(rid)
                try:
                    await read_send.send(SessionMessage(message=message))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
            if on_end is not None:
                on_end()

    writer_done = anyio.Event()

    async def writer() -> None:
        try:
            async with write_recv:
                async for item in write_recv:
                    text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await channel.send([text])
        except anyio.BrokenResourceError:
            pass  # the reader sees the end too
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            async with read_recv, write_send:
                yield read_recv, _RoutingWriter(write_send, routes)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(close_timeout):
                await writer_done.wait()  # what the SDK wrote last still goes out
                with contextlib.suppress(anyio.BrokenResourceError):
                    await channel.close(1000)
            tg.cancel_scope.cancel()
            await channel.aclose()


class _Routes:
    """The `stream_tool` calls in flight on this connection, by request id and token."""

    def __init__(self) -> None:
        self._by_token: dict[object, Route] = {}
        self._token_of: dict[object, object] = {}

    def __len__(self) -> int:
        return len(self._token_of)

    def add(self, request_id: object, token: object, route: Route) -> None:
        self._by_token[token] = route
        self._token_of[request_id] = token

    def forget(self, request_id: object) -> None:
        """The call is over without a response to come (we cancelled it)."""
        token = self._token_of.pop(request_id, None)
        if token is not None:
            self._by_token.pop(token, None)

    def take(self, message: object) -> bool:
        """Hand a call's partial result to its route (True); forget a call once its
        response arrives (then False: the response goes to the SDK)."""
        if isinstance(message, JSONRPCNotification) and message.method == PARTIAL_RESULT:
            params = message.params or {}
            route = self._by_token.get(params.get("partialResultToken"))
            return route is not None and route.take({"method": message.method, "params": params}, 0)
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            self.forget(message.id)
        return False


class _RoutingWriter(_ClosedOnExit):
    """The SDK's write stream: a ``tools/call`` sent from a `stream_tool` block (in the
    caller's task, where its route is offered) registers that route first."""

    def __init__(self, inner: MemoryObjectSendStream[SessionMessage], routes: _Routes) -> None:
        self._inner = inner
        self._routes = routes

    async def send(self, item: SessionMessage) -> None:
        message = item.message
        if isinstance(message, JSONRPCRequest):
            route = claim_route(message.method, message.params)
            if route is not None:
                self._routes.add(message.id, token_of_call(message.params), route)
        elif isinstance(message, JSONRPCNotification) and message.method == CANCELLED:
            # A cancelled call may get no response at all: its route goes now.
            self._routes.forget((message.params or {}).get("requestId"))
        await self._inner.send(item)

    async def aclose(self) -> None:
        """Close the stream to the writer."""
        await self._inner.aclose()
