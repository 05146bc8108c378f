"""``mcp_ws.asgi(app)``: an ASGI WebSocket endpoint (Starlette, uvicorn, ...) on the same mux.

The ASGI server does the WebSocket framing; the mux works on whole messages, so the
session is exactly the one `serving` runs. Handshake checks are the same too; a refusal
is an HTTP answer when the server supports the ``websocket.http.response`` extension,
otherwise a close (1008) before accepting.

The endpoint also answers the ASGI lifespan: while the app runs, streamed calls outlive
their sessions as under `serving` (`RetainedCalls.hosting`); at its shutdown the calls
still running are cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import anyio

from ..protocol.constants import COMPAT_SUBPROTOCOL
from ..protocol.errors import StoreUnavailable
from ..protocol.limits import Limits
from ..protocol.reasons import close_reason
from ..protocol.settings import Settings
from ..transport.policy import Authenticator, HandshakePolicy, Refusal, select_subprotocol
from ..transport.resume import DEFAULT_GRACE, ResumeLimits, ResumeTable, principal_of
from .bridge import DEFAULT_SEND_BUDGET
from .retained import CallStore, RetainedCalls, retained_calls
from .server import DEFAULT_SETTINGS, McpWsServer, session_runner

__all__ = ["AsgiChannel", "asgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiChannel:
    """A `MessageChannel` over an accepted ASGI WebSocket."""

    def __init__(self, receive: Receive, send: Send, *, subprotocol: str | None) -> None:
        self.subprotocol = subprotocol
        self.close_code: int | None = None
        self._receive = receive
        self._send = send
        self._disconnected = False
        self._close_sent = False

    async def receive(self) -> bytes | str | None:
        """The next message; ``None`` after ``websocket.disconnect``."""
        while not self._disconnected:
            message = await self._receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                return data if data is not None else str(message.get("text") or "")
            if message["type"] == "websocket.disconnect":
                self._disconnected = True
                self.close_code = int(message.get("code", 1005))
        return None

    async def send(self, messages: Sequence[bytes | str]) -> None:
        """Send each message (``anyio.BrokenResourceError`` once the socket is gone)."""
        if self._disconnected or self._close_sent:
            raise anyio.BrokenResourceError("the WebSocket is closed")
        try:
            for message in messages:
                key = "text" if isinstance(message, str) else "bytes"
                await self._send({"type": "websocket.send", key: message})
        except OSError as exc:
            self._disconnected = True
            raise anyio.BrokenResourceError("the WebSocket is closed") from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send ``websocket.close`` once."""
        if self._close_sent or self._disconnected:
            return
        self._close_sent = True
        with contextlib.suppress(OSError):
            reason = close_reason(reason)
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    async def aclose(self) -> None:
        """Close if not closed yet."""
        await self.close(1000)


def asgi(
    app: object,
    *,
    path: str | None = None,
    allowed_origins: Sequence[str] | None = None,
    auth: Authenticator | None = None,
    settings: Settings | None = None,
    limits: Limits | None = None,
    send_budget: int = DEFAULT_SEND_BUDGET,
    resume_grace: float = DEFAULT_GRACE,
    resume_limits: ResumeLimits | None = None,
    node: str | None = None,
    store: CallStore | bool | None = None,
) -> ASGIApp:
    """An ASGI app serving ``app`` (``Server`` or ``MCPServer``) over mcp-ws.

    Mount it where clients connect (``path=None`` accepts any path, leaving routing to
    the framework). Plain HTTP requests get 426 Upgrade Required. Resume as with
    `serving` (``resume_grace``, ``resume_limits``; 0 turns it off): a resume must reach
    this process, so with several ASGI worker processes give each a ``node`` name and
    route on it (README, "Behind nginx"); without one, clients resume on the same URL.
    ``store`` keeps streamed calls for re-attach, as in `serving`. Run as the ASGI
    server's app, the endpoint answers its lifespan: streamed calls then outlive their
    sessions for ``resume_grace`` seconds with no reader (the server's shutdown waits
    for them, up to its own graceful-shutdown timeout, then the lifespan's end cancels
    them). Mounted in a framework that keeps the lifespan to itself, enter
    ``mcp_ws.retained_calls(app).hosting()`` in the framework's lifespan for the same.
    """
    server = McpWsServer(
        session_runner(app),
        policy=HandshakePolicy(path=path, allowed_origins=allowed_origins, auth=auth),
        settings=settings or DEFAULT_SETTINGS,
        limits=limits,
        handshake_timeout=10.0,
        send_budget=send_budget,
    )
    if resume_grace > 0:
        server.resume = ResumeTable(grace=resume_grace, node=node or "", limits=resume_limits)
    retained = retained_calls(app, store=store, grace=resume_grace)

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, retained)
            return
        if scope["type"] == "http":
            await _http_answer(send, 426, "use a WebSocket (subprotocol mcp-ws.v1)", {})
            return
        if scope["type"] != "websocket":
            return
        if (await receive())["type"] != "websocket.connect":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        offered = list(scope.get("subprotocols") or [])
        refusal = await server.policy.check(
            scope["path"], headers.get("origin"), headers.get("authorization"), offered
        )
        choice = select_subprotocol(offered)
        if refusal is None and choice is None:
            refusal = (400, "offer subprotocol mcp-ws.v1 (or mcp for JSON text mode)", {})
        if refusal is not None:
            await _refuse(scope, send, refusal)
            return
        await send({"type": "websocket.accept", "subprotocol": choice})
        channel = AsgiChannel(receive, send, subprotocol=choice)
        if choice == COMPAT_SUBPROTOCOL:
            await server.serve_json_text(channel)
        else:
            await server.serve_mux(channel, principal=principal_of(headers.get("authorization")))

    return endpoint


async def _lifespan(receive: Receive, send: Send, retained: RetainedCalls) -> None:
    """The ASGI lifespan: host streamed calls from startup to shutdown."""
    message = await receive()
    if message["type"] != "lifespan.startup":
        return
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(retained.hosting())
        except StoreUnavailable as exc:  # a Redis store that does not answer, or trio
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        while (await receive())["type"] != "lifespan.shutdown":
            pass
    # left hosting: the calls still running are cancelled
    await send({"type": "lifespan.shutdown.complete"})


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    status, text, extra = refusal
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": text.encode()})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": close_reason(text)})


async def _http_answer(send: Send, status: int, text: str, extra: dict[str, str]) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})
