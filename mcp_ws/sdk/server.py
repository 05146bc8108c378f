"""Serve an MCP server (low-level ``Server`` or ``MCPServer``) over mcp-ws.

One MCP session per WebSocket connection, many connections at once, on asyncio or trio.
Subprotocol ``mcp-ws.v1`` gets the mux; ``mcp`` gets JSON text frames (SDK 1.x clients).
"""

from __future__ import annotations

import logging
import math
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..protocol.connection import Role
from ..protocol.constants import COMPAT_SUBPROTOCOL, ErrorCode
from ..protocol.errors import ProtocolError
from ..protocol.limits import Limits
from ..protocol.resume import WORKER_PARAMETER, resume_request
from ..protocol.settings import Settings
from ..transport.mux import MuxConnection
from ..transport.policy import (
    Authenticator,
    HandshakePolicy,
    Refusal,
    offered_subprotocols,
)
from ..transport.resume import DEFAULT_GRACE, ResumeLimits, ResumeTable, principal_of
from ..transport.siblings import Handoff, Siblings, splice
from ..transport.tcp import create_tcp_listener
from ..transport.websocket import MessageChannel, accept_websocket
from ..web import web_response
from .bridge import DEFAULT_SEND_BUDGET, SessionBridge
from .calls import handling
from .compat import json_text_streams
from .partial import advertise_streaming
from .retained import CallStore, ClientLink, retained_calls, serving_client

__all__ = [
    "DEFAULT_HEALTH_PATH",
    "DEFAULT_SETTINGS",
    "McpWsServer",
    "SessionRunner",
    "serve",
    "serving",
    "serving_sessions",
]

logger = logging.getLogger("mcp_ws.server")

DEFAULT_SETTINGS = Settings(max_message_size=80 * 1024 * 1024)
"""The binding's settings: the core's defaults, with messages up to 80 MiB (big results)."""

DEFAULT_HEALTH_PATH = "/healthz"
"""Where a load balancer asks whether the server takes new connections (see `serving`)."""

SessionRunner = Callable[[Any, Any], Awaitable[None]]


def session_runner(app: object) -> SessionRunner:
    """How to run one MCP session of ``app`` over a ``(read, write)`` stream pair."""
    server = app._lowlevel_server if isinstance(app, MCPServer) else app
    if not isinstance(server, Server):
        raise TypeError(
            f"expected an mcp.server.lowlevel.Server or an MCPServer, got {type(app).__name__}"
        )

    advertise_streaming(server)

    async def run(read: Any, write: Any) -> None:
        await server.run(read, write, server.create_initialization_options())

    return run


class McpWsServer:
    """A running mcp-ws server; get one from `serving`.

    ``port`` is the bound port (useful with ``port=0``); `shutdown` drains: it sends
    GOAWAY on every connection and lets in-flight calls finish, while the health path
    answers 503 and new WebSocket upgrades are refused with 503 (so a load balancer
    moves traffic elsewhere), then stops listening.
    """

    def __init__(
        self,
        run_session: SessionRunner,
        *,
        policy: HandshakePolicy,
        settings: Settings,
        limits: Limits | None,
        handshake_timeout: float,
        send_budget: int,
        web: bool = False,
        health_path: str | None = DEFAULT_HEALTH_PATH,
        resume: ResumeTable | None = None,
        siblings: Siblings | None = None,
    ) -> None:
        self._run_session = run_session
        self.siblings = siblings
        """This process's sibling workers (``mcp-ws serve --workers``), if any."""
        self.resume = resume
        """Resumable connections (``None``: resume is off)."""
        self.web = web
        self.health_path = health_path or None
        self.draining = False
        """True once `shutdown` began: the health path says 503, upgrades are refused."""
        self.policy = policy
        self.settings = settings
        self.limits = limits
        self.handshake_timeout = handshake_timeout
        self.send_budget = send_budget
        self.host = ""
        self.port = 0
        self.scheme = "ws"
        self._muxes: set[MuxConnection] = set()
        self._active = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._accepting: anyio.CancelScope | None = None
        self._drained: list[Callable[[], None]] = []

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"{self.scheme}://{self._authority}{self.policy.path or '/'}"

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Connections currently being served."""
        return self._active

    @property
    def queued_bytes(self) -> int:
        """Bytes queued for peers across all mux connections (not yet on the wire)."""
        return sum(mux.buffered() for mux in self._muxes)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Drain: GOAWAY every connection, refuse new ones (503), wait up to ``grace``
        for the connections to end, then stop listening."""
        self.draining = True
        for mux in list(self._muxes):
            mux.close(ErrorCode.NO_ERROR, "server shutting down")
        with anyio.move_on_after(grace):
            await self._idle.wait()
        for callback in self._drained:
            callback()
        if self._accepting is not None:
            self._accepting.cancel()

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once `shutdown`'s grace is over, before the connections
        still open are cancelled (`mcp_ws.serve` cancels the streamed calls that
        outlive their sessions there)."""
        self._drained.append(callback)

    async def _serve_stream(self, stream: anyio.abc.ByteStream) -> None:
        self._active += 1
        if self._active == 1:
            self._idle = anyio.Event()
        try:
            ws = await accept_websocket(
                stream,
                check=self._check,
                max_size=2 * (self.settings.max_frame_size + 1024),
                handshake_timeout=self.handshake_timeout,
            )
            if ws is None:
                return
            if isinstance(ws, Handoff):
                await splice(stream, ws)  # a resume for a sibling worker
                return
            if ws.subprotocol == COMPAT_SUBPROTOCOL:
                ws.set_max_size(self.settings.max_message_size)
                await self.serve_json_text(ws)
            else:
                await self.serve_mux(ws)
        except Exception:
            logger.exception("connection handler failed")
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    @property
    def page_url(self) -> str | None:
        """The chat page's URL when serving it (``web=True``), else ``None``."""
        if not self.web:
            return None
        return f"{'https' if self.scheme == 'wss' else 'http'}://{self._authority}/"

    async def _check(self, request: Request) -> Refusal | Response | Handoff | None:
        path, _, query = request.path.partition("?")
        if self.siblings is not None and WORKER_PARAMETER in query:
            worker = parse_qs(query).get(WORKER_PARAMETER, [""])[0]
            port = self.siblings.port_of(worker)
            if port is not None:
                return Handoff(port)  # the sibling that holds the connection answers
        if self.health_path is not None and path == self.health_path:
            return health_response(draining=self.draining)
        if self.draining:
            return (503, "the server is draining: try again", {"Retry-After": "1"})
        if self.web:
            page = web_response(request, self.policy.path or "/mcp")
            if page is not None:
                return page
        headers = request.headers
        return await self.policy.check(
            request.path,
            headers.get("Origin"),
            headers.get("Authorization"),
            offered_subprotocols(headers.get_all("Sec-WebSocket-Protocol")),
        )

    async def serve_json_text(self, channel: MessageChannel) -> None:
        """Run one session in JSON text mode (subprotocol ``mcp``) until it ends."""
        request = getattr(channel, "request", None)
        principal = principal_of(request.headers.get("Authorization") if request else None)
        link = ClientLink(principal)
        streams = json_text_streams(channel, on_end=link.end, on_cancel=link.heard_cancel)
        async with streams as (read, write):
            with serving_client(link):
                await self._run_session(read, write)

    async def serve_mux(self, channel: MessageChannel, *, principal: str | None = None) -> None:
        """Run one session over the mux (subprotocol ``mcp-ws.v1``) until it ends; or,
        when the first message asks to resume a connection, hand the WebSocket to it.
        ``principal`` is who the client is (`principal_of` its ``Authorization``); by
        default it is read from the channel's handshake request."""
        table = self.resume
        first: bytes | str | None = None
        if principal is None:
            request = getattr(channel, "request", None)
            principal = principal_of(request.headers.get("Authorization") if request else None)
        if table is not None:
            # The client's HELLO says whether it resumes (it waits for our answer if so).
            hello_timeout = (self.limits or Limits()).hello_timeout
            with anyio.move_on_after(hello_timeout) as waiting:
                first = await channel.receive()
            if first is None and not waiting.cancelled_caught:
                await channel.aclose()  # gone before saying anything
                return
            if isinstance(first, bytes):
                try:
                    ask = resume_request(first)
                except ProtocolError:
                    ask = None  # the connection's own checks fail it
                if ask is not None:
                    await table.resume(channel, ask, principal, self.settings)
                    return
        bridge = SessionBridge(Role.SERVER, send_budget=self.send_budget)
        mux = MuxConnection(
            channel,
            Role.SERVER,
            bridge.on_events,
            settings=self.settings,
            limits=self.limits,
            resume=table.grant() if table is not None else None,
            relink=table.wait if table is not None else None,
            grace=table.grace if table is not None else None,
        )
        if table is not None:
            table.register(mux, principal)
            if first is None:  # no HELLO in time: the core's timeout, at once
                mux.core.tick(math.inf)
        bridge.attach(mux)
        self._muxes.add(mux)
        session_done = anyio.Event()
        link = ClientLink(principal)
        bridge.on_closed = link.end
        bridge.on_peer_cancel = link.heard_cancel

        def over() -> None:  # the connection (calls may outlive its session a while)
            self._muxes.discard(mux)
            if table is not None:
                table.forget(mux)

        try:
            async with anyio.create_task_group() as tg:

                async def pump() -> None:
                    await mux.run(first)
                    over()
                    # The session sees the end of its read stream; give it a moment.
                    with anyio.move_on_after(5):
                        await session_done.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(pump)
                try:
                    # the session's handlers inherit both
                    with handling(bridge), serving_client(link):
                        await self._run_session(bridge.read_stream, bridge.write_stream)
                finally:
                    session_done.set()
                    link.end()
                    mux.close()
        finally:
            over()
            bridge.close()


def health_response(*, draining: bool) -> Response:
    """The health check's answer: 200 while serving, 503 once draining."""
    body = b"draining\n" if draining else b"ok\n"
    headers = Headers()
    headers["Content-Type"] = "text/plain; charset=utf-8"
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    if draining:
        headers["Retry-After"] = "1"
        return Response(503, "Service Unavailable", headers, body)
    return Response(200, "OK", headers, body)


@asynccontextmanager
async def serving(
    app: object,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    allowed_origins: Sequence[str] | None = None,
    auth: Authenticator | None = None,
    ssl: _ssl.SSLContext | None = None,
    settings: Settings | None = None,
    limits: Limits | None = None,
    handshake_timeout: float = 10.0,
    send_budget: int = DEFAULT_SEND_BUDGET,
    shutdown_grace: float = 10.0,
    web: bool = False,
    health_path: str | None = DEFAULT_HEALTH_PATH,
    resume_grace: float = DEFAULT_GRACE,
    resume_limits: ResumeLimits | None = None,
    node: str | None = None,
    store: CallStore | bool | None = None,
) -> AsyncIterator[McpWsServer]:
    """Serve ``app`` while the block runs; leaving it shuts down gracefully.

    ``app`` is an ``mcp.server.lowlevel.Server`` or an ``MCPServer``. ``port=0`` picks a
    free port (see ``server.port``). ``auth`` checks bearer tokens (see `bearer_token`),
    ``allowed_origins`` the ``Origin`` header (default: loopback pages only).
    ``web=True`` also serves the chat page at ``/`` (``server.page_url``).
    ``health_path`` answers a plain GET with 200 while serving and 503 once draining
    (``None`` turns it off). Leaving the block drains for up to ``shutdown_grace``
    seconds (see `McpWsServer.shutdown`).
    ``resume_grace``: seconds a connection whose link dropped waits for its client to
    resume it (docs/protocol.md section 9; 0 turns resume off), within
    ``resume_limits``; ``node`` is the name clients resume with (default: the address
    the server listens on, ``host:port``).
    ``store`` keeps streamed calls for re-attach (default: an `EmbeddedStore`, see
    docs/streaming.md; a `RedisStore` to share them with other servers; ``False``:
    none); a call whose session ended runs on for ``resume_grace`` seconds with no
    reader attached.
    Raises ``OSError`` if it cannot listen (the port is in use, say).
    """
    retained = retained_calls(app, store=store, grace=resume_grace)
    async with (
        retained.hosting(),
        serving_sessions(
            session_runner(app),
            host=host,
            port=port,
            path=path,
            allowed_origins=allowed_origins,
            auth=auth,
            ssl=ssl,
            settings=settings,
            limits=limits,
            handshake_timeout=handshake_timeout,
            send_budget=send_budget,
            shutdown_grace=shutdown_grace,
            web=web,
            health_path=health_path,
            resume_grace=resume_grace,
            resume_limits=resume_limits,
            node=node,
        ) as server,
    ):
        server.when_drained(retained.stop)
        yield server


@asynccontextmanager
async def serving_sessions(
    run_session: SessionRunner,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    allowed_origins: Sequence[str] | None = None,
    auth: Authenticator | None = None,
    ssl: _ssl.SSLContext | None = None,
    settings: Settings | None = None,
    limits: Limits | None = None,
    handshake_timeout: float = 10.0,
    send_budget: int = DEFAULT_SEND_BUDGET,
    shutdown_grace: float = 10.0,
    web: bool = False,
    health_path: str | None = DEFAULT_HEALTH_PATH,
    reuse_port: bool = False,
    resume_grace: float = DEFAULT_GRACE,
    resume_limits: ResumeLimits | None = None,
    node: str | None = None,
    siblings: Siblings | None = None,
) -> AsyncIterator[McpWsServer]:
    """Like `serving`, with ``run_session(read, write)`` running each connection's session.

    For relays such as `mcp_ws.sdk.proxy.stdio_bridge`; options as in `serving`, and
    ``reuse_port`` (SO_REUSEPORT: several processes share the port, as the workers of
    ``mcp-ws serve --workers`` do), and ``siblings`` (those workers' private ports, so
    that a resume reaches the worker that holds its connection).
    """
    server = McpWsServer(
        run_session,
        policy=HandshakePolicy(path=path, allowed_origins=allowed_origins, auth=auth),
        settings=settings or DEFAULT_SETTINGS,
        limits=limits,
        handshake_timeout=handshake_timeout,
        send_budget=send_budget,
        web=web,
        health_path=health_path,
        siblings=siblings,
    )
    tcp = await create_tcp_listener(host, port, reuse_port=reuse_port)
    server.host = str(tcp.extra(anyio.abc.SocketAttribute.local_address)[0])
    server.port = int(tcp.extra(anyio.abc.SocketAttribute.local_port))
    if resume_grace > 0:
        server.resume = ResumeTable(
            grace=resume_grace,
            node=node or server._authority,
            worker=siblings.name if siblings is not None else None,
            limits=resume_limits,
        )
    private: anyio.abc.Listener[Any] | None = None
    if siblings is not None:
        private = await create_tcp_listener("127.0.0.1", 0)
        siblings.publish(int(private.extra(anyio.abc.SocketAttribute.local_port)))
        if ssl is not None:
            private = TLSListener(private, ssl, standard_compatible=False)
    listener: anyio.abc.Listener[Any] = tcp
    if ssl is not None:
        listener = TLSListener(listener, ssl, standard_compatible=False)
        server.scheme = "wss"
    async with listener, anyio.create_task_group() as connections:
        async with anyio.create_task_group() as accept_group:
            server._accepting = accept_group.cancel_scope
            accept_group.start_soon(listener.serve, server._serve_stream, connections)
            if private is not None:
                accept_group.start_soon(private.serve, server._serve_stream, connections)
            try:
                yield server
            finally:
                with anyio.CancelScope(shield=True):
                    await server.shutdown(shutdown_grace)
                accept_group.cancel_scope.cancel()
        connections.cancel_scope.cancel()


async def serve(app: object, **options: Any) -> None:
    """Serve ``app`` over mcp-ws until cancelled (same options as `serving`)."""
    async with serving(app, **options) as server:
        logger.info("serving MCP over mcp-ws at %s", server.url)
        await anyio.sleep_forever()
