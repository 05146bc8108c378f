"""Streamed calls kept for re-attach: handles, the attach method, calls that outlive
their session (docs/streaming.md, "Re-attach").

A ``tools/call`` that asks for partial results runs as a *production*: when its tool
enters ``partial_results(ctx)``, the call gets a handle in the app's store (the start
event carries it), each event is kept in the store before it goes to the caller, and
the call's one outcome is kept when it ends. Any client of the same principal can then
read the call from a cursor with ``io.github.mcp-ws/attach``, over any transport.

Where the calls run: a streamed call's handler runs in its session's task, as any
other. Under `RetainedCalls.hosting` (`mcp_ws.serve` opens it), once the call has its
handle its cancel scope is shielded from the session's: an explicit cancel (the
caller's ``notifications/cancelled`` or mcp-ws CANCEL, or ``io.github.mcp-ws/cancel``
from an attached reader) cancels it at once, and when the client's connection ends (a
reload, a killed client, a resume that never came) the call goes on: while a reader is
attached, and otherwise for ``grace`` seconds, then it is cancelled as before (a
watcher in the host's task group decides). Its session ends when it does. Without
`hosting` (an app run over stdio by the SDK, say) calls end with their session;
attach still works.

The meeting point between a production and the tool's `PartialResults` is one
``ContextVar``, set in the production's own task (`current_production`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.abc
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    CancelledNotificationParams,
    EmptyResult,
    ErrorData,
    Request,
    RequestId,
    RequestParams,
)
from pydantic import BaseModel, ConfigDict

from ..protocol.errors import EventsGone, InvalidCursor, UnknownHandle
from ..transport.resume import DEFAULT_GRACE, principal_of
from .bridge import REQUEST_REFUSED
from .calls import CANCELLED
from .emit import PartialEmitter
from .redis_store import RedisStore
from .store import EmbeddedStore

__all__ = [
    "ATTACH",
    "CANCEL",
    "CANCELLED_MESSAGE",
    "CallStore",
    "ClientLink",
    "Production",
    "RetainedCalls",
    "current_production",
    "retained_calls",
    "serving_client",
]

ATTACH = "io.github.mcp-ws/attach"
"""The extension method that reads a call by its handle (params ``handle``, ``after``)."""

CANCEL = "io.github.mcp-ws/cancel"
"""The extension method that cancels a running call by its handle (params ``handle``)."""

CANCELLED_MESSAGE = "the call was cancelled"
"""The outcome readers get for a cancelled call (code `REQUEST_REFUSED`, -32003)."""

_production: ContextVar[Production | None] = ContextVar("mcp_ws_production", default=None)
_client: ContextVar[ClientLink | None] = ContextVar("mcp_ws_client", default=None)


def current_production() -> Production | None:
    """The production of the streamed call whose handler runs in this context, if any."""
    return _production.get()


class ClientLink:
    """Who the client of a session is (its principal), and whether its connection is
    gone: a call cancelled once it is gone was not cancelled by its client. The
    server calls `end` when the connection goes, and `heard_cancel` as each of the
    client's cancels arrives; the app's ``notifications/cancelled`` handler calls
    `cancelled`. The streamed calls it watches outlive it or are cancelled."""

    def __init__(self, principal: str) -> None:
        self.principal = principal
        self.gone = False
        """Whether the client's connection is gone (`end`)."""
        self._calls: dict[RequestId | None, Production] = {}
        self._cancelling: dict[RequestId | None, Production] = {}  # heard, app not told
        self._heard: set[RequestId | None] = set()  # heard for calls not watched (yet)

    def end(self) -> None:
        """The connection is gone: the calls it watches run on for their readers, but
        those their client cancelled are cancelled."""
        if self.gone:
            return
        self.gone = True
        calls, self._calls = self._calls, {}
        cancelling, self._cancelling = self._cancelling, {}
        for production in cancelling.values():
            production.cancel()
        for production in calls.values():
            production.retained._outlive(production)

    def heard_cancel(self, request_id: RequestId) -> None:
        """The client's cancel of ``request_id`` arrived (ignored once the connection is
        gone: a lost connection cancels every request, and those calls outlive it).
        The call is marked now, and cancelled when the app hears of it (`cancelled`):
        the SDK must know first, or it would answer the request, and a request sent
        again with the same id would get that answer. Should the connection end
        first, `end` cancels it."""
        if not self.gone:
            key = coerce_request_id(request_id)
            production = self._calls.pop(key, None)
            if production is not None:
                self._cancelling[key] = production
            else:
                self._heard.add(key)  # not shielded yet: the SDK's cancel reaches it

    def cancelled(self, request_id: RequestId | None) -> None:
        """The app heard that the client cancelled ``request_id``: cancel the call
        `heard_cancel` marked."""
        key = None if request_id is None else coerce_request_id(request_id)
        self._heard.discard(key)
        production = self._cancelling.pop(key, None)
        if production is not None:
            production.cancel()

    def _watch(self, production: Production) -> bool:
        key = production.request_id
        if self.gone or key in self._heard:
            return False  # gone, or cancelled: the session's cancel is to reach it
        self._calls[key] = production
        return True

    def _unwatch(self, production: Production) -> None:
        key = production.request_id
        for calls in (self._calls, self._cancelling):
            if calls.get(key) is production:
                del calls[key]


@contextmanager
def serving_client(link: ClientLink) -> Iterator[None]:
    """Run a session's handlers for the client ``link`` (the server's meeting point)."""
    token = _client.set(link)
    try:
        yield
    finally:
        _client.reset(token)


def principal_of_request(ctx: Any) -> str:
    """Who sent the request: the connection's principal over mcp-ws, the HTTP request's
    ``Authorization`` over streamable HTTP, else "" (stdio: one principal)."""
    link = _client.get()
    if link is not None:
        return link.principal
    headers = getattr(getattr(ctx, "request", None), "headers", None)
    if headers is not None:
        return principal_of(headers.get("authorization"))
    return ""


FINISH_TIMEOUT = 5.0
"""Seconds keeping a call's outcome may take (a shared store that does not answer)."""


class Production:
    """One streamed call as the store sees it: its handle (once its tool entered
    ``partial_results``), whether its own caller still reads, and its cancel scope."""

    def __init__(
        self,
        retained: RetainedCalls,
        principal: str,
        link: ClientLink | None = None,
        request_id: RequestId | None = None,
    ) -> None:
        self.retained = retained
        self.principal = principal
        self.link = link
        """The client whose session runs the call, when the call may outlive it."""
        self.request_id = None if request_id is None else coerce_request_id(request_id)
        """The request that started it, as the SDK correlates ids ("7" is 7)."""
        self.scope = anyio.CancelScope()
        self.handle: str | None = None
        self.origin = True
        """Whether the call's own caller still reads it (its session is alive)."""
        self.finished = False
        """Whether its outcome is kept (`finish`)."""

    async def open(self, start: Mapping[str, Any]) -> str:
        """Give the call its handle; ``start`` is its start event (seq 0). Under
        `RetainedCalls.hosting`, the call is shielded from its session from now on."""
        if self.handle is None:
            store = self.retained.store
            self.handle = await store.open(self.principal, start, on_cancel=self.cancel)
            self.retained._running[self.handle] = self
            link = self.link
            if link is not None and self.retained._host is not None and link._watch(self):
                self.scope.shield = True  # the session's end no longer ends the call
        return self.handle

    async def lose_origin(self) -> None:
        """The call's own caller reads no more."""
        if self.origin:
            self.origin = False
            if self.handle is not None:
                await self.retained.store.origin_gone(self.handle)

    async def finish(self, outcome: Mapping[str, Any]) -> None:
        """Keep the call's one outcome (``{"result": ...}`` or ``{"error": ...}``),
        even in a session being cancelled."""
        self.finished = True
        if self.link is not None:
            self.link._unwatch(self)
        if self.handle is not None:
            with anyio.move_on_after(FINISH_TIMEOUT, shield=True):
                await self.retained.store.finish(self.handle, outcome)
            self.retained._running.pop(self.handle, None)

    def cancel(self) -> None:
        """Cancel the call now."""
        self.scope.cancel()

    async def outlive(self, grace: float) -> None:
        """The session is gone: run on while a reader reads, else ``grace`` seconds."""
        await self.lose_origin()
        assert self.handle is not None
        if await self.retained.store.unread_for(self.handle, grace):
            self.scope.cancel()


class AttachParams(RequestParams):
    """``io.github.mcp-ws/attach`` params (checked by the store, for its own errors)."""

    model_config = ConfigDict(extra="allow")
    handle: Any = None
    after: Any = None


class CancelParams(RequestParams):
    """``io.github.mcp-ws/cancel`` params."""

    model_config = ConfigDict(extra="allow")
    handle: Any = None


class AttachRequest(Request[AttachParams, str]):
    """An ``io.github.mcp-ws/attach`` request (what `mcp_ws.attach` sends)."""

    method: str = ATTACH
    params: AttachParams


class CancelRequest(Request[CancelParams, str]):
    """An ``io.github.mcp-ws/cancel`` request (what `AttachedStream.cancel` sends)."""

    method: str = CANCEL
    params: CancelParams


Handler = Callable[[Any, Any], Awaitable[Any]]

CallStore = EmbeddedStore | RedisStore
"""Where an app keeps its streamed calls: in its own memory, or in Redis for several."""


class RetainedCalls:
    """The streamed calls of one app: the store, and the task group they run in.

    ``store`` defaults to an `EmbeddedStore`; ``grace`` is how long a call whose session
    ended runs on with no reader (`mcp_ws.serve` passes its resume grace).
    """

    def __init__(self, store: CallStore | None = None, *, grace: float = DEFAULT_GRACE):
        self.store: CallStore = store if store is not None else EmbeddedStore()
        self.grace = grace
        self.keeping = True
        """Whether streamed calls are kept (``store=False`` turns it off: no handles)."""
        self._host: anyio.abc.TaskGroup | None = None
        self._running: dict[str, Production] = {}

    @asynccontextmanager
    async def hosting(self) -> AsyncIterator[None]:
        """Let streamed calls outlive their sessions while the block runs (their
        watchers run in a task group of its own); leaving it cancels the calls still
        running (`stop`)."""
        if self._host is not None:
            yield  # already hosted (a server inside another, say)
            return
        async with self.store, anyio.create_task_group() as host:
            self._host = host
            try:
                yield
            finally:
                self._host = None
                self.stop()
                host.cancel_scope.cancel()

    def stop(self) -> None:
        """Cancel every call running here (a server at the end of its drain)."""
        for production in list(self._running.values()):
            production.cancel()

    def _outlive(self, production: Production) -> None:
        """``production``'s client is gone: watch it for readers (or cancel it)."""
        host = self._host
        if host is None:
            production.cancel()
        else:
            host.start_soon(production.outlive, self.grace)

    def install(self, server: Server[Any]) -> None:
        """Wrap ``server``'s ``tools/call`` handler, add the attach and cancel methods,
        and learn of the client's cancels (``notifications/cancelled``)."""
        entry = server.get_request_handler("tools/call")
        if entry is not None:
            original = entry.handler

            async def call_tool(ctx: Any, params: Any) -> Any:
                return await self.call_tool(original, ctx, params)

            server.add_request_handler("tools/call", entry.params_type, call_tool)
        server.add_request_handler(ATTACH, AttachParams, self.attach)
        server.add_request_handler(CANCEL, CancelParams, self.cancel)
        previous = server.get_notification_handler(CANCELLED)

        async def on_cancelled(ctx: Any, params: Any) -> None:
            link = _client.get()
            if link is not None:
                link.cancelled(getattr(params, "request_id", None))
            if previous is not None:
                await previous.handler(ctx, params)

        server.add_notification_handler(CANCELLED, CancelledNotificationParams, on_cancelled)

    # ------------------------------------------------------------------ tools/call

    async def call_tool(self, original: Handler, ctx: Any, params: Any) -> Any:
        """Run a ``tools/call`` handler; as a production if it asks for partial results."""
        if not self.keeping or _token(params) is None:
            return await original(ctx, params)
        link = _client.get()
        principal = link.principal if link is not None else principal_of_request(ctx)
        production = Production(self, principal, link, getattr(ctx, "request_id", None))
        reset = _production.set(production)
        try:
            return await self._produce(production, original, ctx, params)
        finally:
            _production.reset(reset)

    async def _produce(
        self, production: Production, original: Handler, ctx: Any, params: Any
    ) -> Any:
        cancelled = {"error": {"code": REQUEST_REFUSED, "message": CANCELLED_MESSAGE}}
        try:
            with production.scope:
                try:
                    result = await original(ctx, params)
                except MCPError as exc:
                    await production.finish({"error": _error_dict(exc.error)})
                    raise
                except Exception as exc:
                    error = {"code": INTERNAL_ERROR, "message": str(exc)}
                    await production.finish({"error": error})
                    raise
                await production.finish({"result": _result_dict(result)})
                return result
            await production.finish(cancelled)
            raise MCPError(REQUEST_REFUSED, CANCELLED_MESSAGE)
        finally:
            if not production.finished:  # its session cancelled it (not hosted)
                await production.finish(cancelled)

    # ------------------------------------------------------------------ attach, cancel

    async def attach(self, ctx: Any, params: AttachParams) -> dict[str, Any]:
        """``io.github.mcp-ws/attach``: the call's events after ``after`` as partial
        results of this request (the reader's ``partialResultToken``), then its outcome
        as this request's answer."""
        token = _token(params)
        emitter = PartialEmitter(ctx, token) if token is not None else None
        events = self.store.read(params.handle, principal_of_request(ctx), params.after)
        try:
            async with aclosing(events):
                async for seq, event in events:
                    if seq is None:
                        return _outcome(event)
                    if emitter is not None:
                        fields = {**event, "handle": params.handle} if seq == 0 else event
                        await emitter.emit(seq, fields)
        except (UnknownHandle, EventsGone, InvalidCursor) as exc:
            raise MCPError(exc.code, str(exc), exc.data) from None
        raise MCPError(INTERNAL_ERROR, "the store ended a read without an outcome")

    async def cancel(self, ctx: Any, params: CancelParams) -> EmptyResult:
        """``io.github.mcp-ws/cancel``: cancel the running call ``handle``. A finished
        call is left as it is; an unknown or foreign handle is `UnknownHandle`."""
        principal = principal_of_request(ctx)
        handle = params.handle
        production = self._running.get(handle) if isinstance(handle, str) else None
        if production is None:
            # Running on another server sharing the store: it is told. Finished (and
            # kept) calls of this principal are left alone; the rest is unknown.
            if isinstance(handle, str) and await self.store.request_cancel(handle, principal):
                return EmptyResult()
            if not isinstance(handle, str) or not await self.store.owns(handle, principal):
                error = UnknownHandle()
                raise MCPError(error.code, str(error))
            return EmptyResult()
        if production.principal != principal:
            error = UnknownHandle()
            raise MCPError(error.code, str(error))
        production.cancel()
        return EmptyResult()


def _token(params: Any) -> str | int | None:
    """The request's ``partialResultToken`` (``params.meta``: a dict in the SDK's models)."""
    meta = getattr(params, "meta", None)
    token = meta.get("partialResultToken") if isinstance(meta, Mapping) else None
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


def _error_dict(error: ErrorData) -> dict[str, Any]:
    return error.model_dump(by_alias=True, mode="json", exclude_none=True)


def _result_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):  # what was set, as the SDK sends it to the caller
        return result.model_dump(by_alias=True, mode="json", exclude_none=True, exclude_unset=True)
    return dict(result) if isinstance(result, Mapping) else {"content": []}


def _outcome(outcome: Mapping[str, Any]) -> dict[str, Any]:
    error = outcome.get("error")
    if isinstance(error, Mapping):
        raise MCPError(
            int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")), error.get("data")
        )
    result = outcome.get("result")
    return dict(result) if isinstance(result, Mapping) else {"content": []}


def retained_calls(
    app: object, *, store: CallStore | bool | None = None, grace: float | None = None
) -> RetainedCalls:
    """``app``'s `RetainedCalls`, installed on first use (`advertise_streaming` does).
    ``store`` and ``grace``, when given, replace the current ones; ``store=False`` keeps
    no calls (no handles, nothing to re-attach to)."""
    server = app._lowlevel_server if isinstance(app, MCPServer) else app
    if not isinstance(server, Server):
        raise TypeError(f"expected a Server or an MCPServer, got {type(app).__name__}")
    retained: RetainedCalls | None = getattr(server, "_mcp_ws_retained", None)
    if retained is None:
        retained = RetainedCalls()
        retained.install(server)
        server._mcp_ws_retained = retained  # type: ignore[attr-defined]
    if isinstance(store, bool):
        retained.keeping = store
    elif store is not None:
        retained.store = store
        retained.keeping = True
    if grace is not None:
        retained.grace = grace
    return retained
