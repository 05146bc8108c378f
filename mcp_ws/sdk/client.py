"""The client transport: ``mcp_ws.connect(url)`` for ``ClientSession`` and ``mcp.Client``."""

from __future__ import annotations

import ssl as _ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote

import anyio
from mcp.shared.message import SessionMessage

from ..protocol.connection import Role
from ..protocol.constants import COMPAT_SUBPROTOCOL, SUBPROTOCOL
from ..protocol.limits import Limits
from ..protocol.resume import NODE_PARAMETER, WORKER_PARAMETER
from ..protocol.settings import Settings
from ..transport.mux import LinkState, MuxConnection
from ..transport.websocket import HandshakeError, MessageChannel, WebSocket, open_websocket
from .bridge import DEFAULT_SEND_BUDGET, SessionBridge
from .compat import json_text_streams
from .handover import Handover
from .server import DEFAULT_SETTINGS

if TYPE_CHECKING:
    # The SDK's own stream protocols, which ClientSession and mcp.Client take. The SDK
    # defines them in a private module (mcp.client._transport re-exports them), so they
    # are imported for type checkers only.
    from mcp.client._transport import ReadStream, WriteStream

__all__ = ["ClientStreams", "client_streams", "connect"]

ClientStreams: TypeAlias = (
    "tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]"
)
"""What `connect` yields: the SDK's read and write streams, as ``ClientSession`` and
``mcp.Client`` take them (so ``mypy --strict`` checks what a program does with them)."""


@asynccontextmanager
async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl: _ssl.SSLContext | None = None,
    settings: Settings | None = None,
    limits: Limits | None = None,
    token: str | None = None,
    subprotocols: Sequence[str] = (SUBPROTOCOL, COMPAT_SUBPROTOCOL),
    handshake_timeout: float = 10.0,
    close_timeout: float = 5.0,
    send_budget: int = DEFAULT_SEND_BUDGET,
    handover: bool = True,
    resume: bool = True,
    on_link: Callable[[LinkState], None] | None = None,
) -> AsyncIterator[ClientStreams]:
    """Connect to an MCP server over WebSocket; yield ``(read_stream, write_stream)``.

    Use it as an SDK transport: ``ClientSession(read, write)``, or
    ``mcp.Client(mcp_ws.connect(url))``. ``token`` sends ``Authorization: Bearer``.
    Offers ``mcp-ws.v1`` and falls back to JSON text frames when the server picks
    ``mcp``. Raises `HandshakeError` if the server refuses (``.status`` 401, 403, ...)
    and ``OSError`` if it cannot be reached. Leaving the block cancels what is still in
    flight and closes the connection.

    ``handover`` (on ``mcp-ws.v1``): when the server goes away gracefully, a fresh
    connection to the same URL is made at once and new requests move to it while calls
    in flight finish; after a lost connection the next request connects again (see
    `mcp_ws.sdk.handover`, and ``docs/parity.md`` for the TypeScript client's twin).
    ``handover=False`` keeps to one connection: once it ends, every request fails.

    ``resume`` (with ``handover``, when the server offers it): a link that drops without
    a closing handshake is resumed over a new WebSocket with nothing lost or repeated,
    and the session never sees the cut (docs/protocol.md section 9). ``on_link`` is told
    when that starts (`LinkState.RECOVERING`), succeeds (``RECOVERED``) or fails
    (``LOST``: calls in flight then fail with ``OUTCOME_UNKNOWN``).
    """
    settings = settings or DEFAULT_SETTINGS
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"

    async def dial(
        offer: Sequence[str] = subprotocols, node: str | None = None, worker: str | None = None
    ) -> WebSocket:
        target = url
        for name, value in ((NODE_PARAMETER, node), (WORKER_PARAMETER, worker)):
            if value is not None:
                # ":" and brackets stay as they are: a proxy compares the raw value
                # (nginx's $arg_mcp_ws_node is not decoded) with HOST:PORT.
                target += f"{'&' if '?' in target else '?'}{name}={quote(value, safe=':[]')}"
        return await open_websocket(
            target,
            subprotocols=offer,
            headers=all_headers,
            ssl=ssl,
            max_size=2 * (settings.max_frame_size + 1024),
            handshake_timeout=handshake_timeout,
        )

    ws = await dial()
    if ws.subprotocol == SUBPROTOCOL and handover:
        first: WebSocket | None = ws

        async def redial() -> MessageChannel:
            nonlocal first
            if first is not None:
                channel, first = first, None
                return channel
            channel = await dial((SUBPROTOCOL,))
            if channel.subprotocol != SUBPROTOCOL:
                await channel.aclose()
                raise HandshakeError(f"the server chose {channel.subprotocol!r} this time")
            return channel

        async def resume_dial(node: str | None, worker: str | None) -> MessageChannel:
            channel = await dial((SUBPROTOCOL,), node, worker)
            if channel.subprotocol != SUBPROTOCOL:
                await channel.aclose()
                raise HandshakeError(f"the server chose {channel.subprotocol!r} this time")
            return channel

        async with Handover(
            redial,
            settings=settings,
            limits=limits,
            close_timeout=close_timeout,
            send_budget=send_budget,
            handshake_timeout=handshake_timeout,
            resume_dial=resume_dial if resume else None,
            on_link=on_link,
        ) as session:
            await session.start()
            yield session.read_stream, session.write_stream
        return
    if ws.subprotocol == COMPAT_SUBPROTOCOL:
        ws.set_max_size(settings.max_message_size)
        async with json_text_streams(ws, close_timeout=close_timeout) as (read, write):
            yield read, write
        return
    if ws.subprotocol != SUBPROTOCOL:
        await ws.aclose()
        raise HandshakeError(f"the server chose subprotocol {ws.subprotocol!r}, not mcp-ws.v1")
    async with client_streams(
        ws,
        settings=settings,
        limits=limits,
        close_timeout=close_timeout,
        send_budget=send_budget,
    ) as streams:
        yield streams


@asynccontextmanager
async def client_streams(
    channel: MessageChannel,
    *,
    settings: Settings | None = None,
    limits: Limits | None = None,
    close_timeout: float = 5.0,
    send_budget: int = DEFAULT_SEND_BUDGET,
) -> AsyncIterator[ClientStreams]:
    """The client side of the mux over an already open ``mcp-ws.v1`` channel."""
    bridge = SessionBridge(Role.CLIENT, send_budget=send_budget)
    mux = MuxConnection(
        channel,
        Role.CLIENT,
        bridge.on_events,
        settings=settings or DEFAULT_SETTINGS,
        limits=limits,
        close_timeout=close_timeout,
    )
    bridge.attach(mux)
    async with anyio.create_task_group() as tg:
        tg.start_soon(mux.run)
        try:
            yield bridge.read_stream, bridge.write_stream
        finally:
            with anyio.CancelScope(shield=True):
                if not mux.finished:
                    bridge.cancel_all("the client is leaving")
                    mux.close()
                with anyio.move_on_after(close_timeout):
                    await mux.wait_finished()
            tg.cancel_scope.cancel()
            bridge.close()
