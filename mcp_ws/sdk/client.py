"""The client transport: ``mcp_ws.connect(url)`` for ``ClientSession`` and ``mcp.Client``."""

from __future__ import annotations

import ssl as _ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..protocol.connection import Role
from ..protocol.constants import COMPAT_SUBPROTOCOL, SUBPROTOCOL
from ..protocol.limits import Limits
from ..protocol.settings import Settings
from ..transport.mux import MuxConnection
from ..transport.websocket import HandshakeError, MessageChannel, open_websocket
from .bridge import DEFAULT_SEND_BUDGET, SessionBridge
from .compat import json_text_streams
from .server import DEFAULT_SETTINGS

__all__ = ["client_streams", "connect"]


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
) -> AsyncIterator[tuple[Any, Any]]:
    """Connect to an MCP server over WebSocket; yield ``(read_stream, write_stream)``.

    Use it as an SDK transport: ``ClientSession(read, write)``, or
    ``mcp.Client(mcp_ws.connect(url))``. ``token`` sends ``Authorization: Bearer``.
    Offers ``mcp-ws.v1`` and falls back to JSON text frames when the server picks
    ``mcp``. Raises `HandshakeError` if the server refuses (``.status`` 401, 403, ...)
    and ``OSError`` if it cannot be reached. Leaving the block cancels what is still in
    flight and closes the connection.
    """
    settings = settings or DEFAULT_SETTINGS
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    ws = await open_websocket(
        url,
        subprotocols=subprotocols,
        headers=all_headers,
        ssl=ssl,
        max_size=2 * (settings.max_frame_size + 1024),
        handshake_timeout=handshake_timeout,
    )
    if ws.subprotocol == COMPAT_SUBPROTOCOL:
        ws.set_max_size(settings.max_message_size)
        async with json_text_streams(ws, close_timeout=close_timeout) as streams:
            yield streams
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
) -> AsyncIterator[tuple[Any, Any]]:
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
