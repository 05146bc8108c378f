"""The meeting point between one tool call and an ``on_partial`` callback: a route
(`mcp_ws.sdk.calls.Route`) that takes the call's partial results off its stream and a
task that hands them to the callback in order."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from mcp_types import CallToolResult

from ..sdk.calls import routing
from ..sdk.stream_tool import Delta, PartialResultRoute, Started, partial_event
from ..sdk.streaming import (
    EXTENSION_ID,
    Aggregate,
    as_json_safe,
    new_token,
)

__all__ = ["STOP", "OnPartial", "PartialCall", "call_reporting_partials", "reporting_partials"]

R = TypeVar("R")


class _Stop:
    def __repr__(self) -> str:
        return "mcp_ws.integrations.STOP"


STOP: Any = _Stop()
"""Return it from ``on_partial`` to end the call now: the server's handler is cancelled,
and the call returns what streamed so far, marked ``{"stopped": true}`` in its
``_meta["io.github.mcp-ws/streaming"]``."""

OnPartial = Callable[[Started | Delta], Awaitable[Any] | Any]
"""``on_partial(event)``: a function or coroutine function of a `Started` or `Delta`;
it may return `STOP`."""


class PartialCall:
    """One tool call reporting its partial results: the ``meta`` to send it with, the
    cancel scope to run it in, and what streamed so far."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.scope = anyio.CancelScope()
        self.stopped = False
        self.aggregate = Aggregate()

    def result(self) -> CallToolResult:
        """What streamed before the callback returned `STOP`, as the call's result."""
        return CallToolResult.model_validate(
            {
                "content": [as_json_safe(block) for block in self.aggregate.content],
                "isError": False,
                "_meta": {EXTENSION_ID: {"stopped": True}},
            }
        )


_Item = tuple[Any, int, Callable[[int], None] | None]


class _PartialRoute(PartialResultRoute):
    """Queues the partial results of the ``tools/call`` carrying ``token``."""

    def __init__(self, token: str, send: MemoryObjectSendStream[_Item]) -> None:
        self.token = token
        self._send = send
        self._ack = None

    def deliver(self, params: Any, size: int = 0) -> None:
        try:
            self._send.send_nowait((params, size, self._ack))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            if self._ack is not None and size:
                self._ack(size)  # nobody will read it: the credit goes back now


@asynccontextmanager
async def reporting_partials(
    on_partial: OnPartial, meta: Mapping[str, Any] | None
) -> AsyncIterator[PartialCall]:
    """Yield a `PartialCall` whose ``meta`` is ``meta`` with a fresh
    ``partialResultToken``: a ``tools/call`` sent with it from inside the block has its
    partial results handed to ``on_partial``, in order, each awaited before its stream
    credit goes back. When the callback returns `STOP`, the call's ``scope`` is
    cancelled (run the call inside it) and later partial results are not handed over.
    Leaving the block waits until every partial result that arrived was handled.

    The queue between the route and the callback is unbounded in count, but not in
    bytes: what it holds is never more than the call's stream window, since credit
    returns only after the callback.
    """
    token = new_token()
    send, receive = anyio.create_memory_object_stream[_Item](math.inf)
    route = _PartialRoute(token, send)
    call = PartialCall({**(meta or {}), "partialResultToken": token})

    async def deliver() -> None:
        seq = 0
        async with receive:
            async for params, size, ack in receive:
                try:
                    event = partial_event(params, seq) if isinstance(params, Mapping) else None
                    seq += 1
                    if event is None or call.stopped:
                        continue
                    if isinstance(event, Delta):
                        call.aggregate.add(event.blocks)
                    outcome = on_partial(event)
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
                    if outcome is STOP:
                        call.stopped = True
                        call.scope.cancel()
                finally:
                    if ack is not None and size:
                        ack(size)

    async with anyio.create_task_group() as tg:
        tg.start_soon(deliver)
        try:
            with routing(route):
                yield call
        finally:
            send.close()  # the callback gets what came, then `deliver` ends


async def call_reporting_partials(
    on_partial: OnPartial,
    meta: Mapping[str, Any] | None,
    call: Callable[[dict[str, Any]], Awaitable[R]],
) -> R | CallToolResult:
    """Make one tool call inside `reporting_partials`: ``call(meta)`` sends it with the
    ``meta`` that asks for partial results. Returns its result or, when the callback
    returned `STOP` before the call ended, what streamed so far."""
    async with reporting_partials(on_partial, meta) as reported:
        with reported.scope:
            return await call(reported.meta)
    return reported.result()
