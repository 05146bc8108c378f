"""A FastMCP client transport for mcp-ws: ``fastmcp.Client(McpWsTransport(url))``.

Needs the extra: ``pip install 'mcp-ws-streaming[fastmcp]'``. pydantic-ai's MCP toolset
takes such a client too: ``MCPToolset(fastmcp.Client(McpWsTransport(url)))``.

With ``on_partial``, every ``tools/call`` the client makes asks for partial results and
hands each `mcp_ws.Started` and `mcp_ws.Delta` to the callback while the tool runs
(see `mcp_ws.integrations`); the call still returns the whole result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

try:
    from fastmcp.client.transports import ClientTransport
    from fastmcp.client.transports.base import TransportOptions
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "mcp_ws.integrations.fastmcp needs FastMCP: pip install 'mcp-ws-streaming[fastmcp]'"
    ) from exc
from mcp import ClientSession

from ..sdk.client import connect
from ._partials import OnPartial, call_reporting_partials

__all__ = ["McpWsTransport"]


class McpWsTransport(ClientTransport):
    """A FastMCP ``ClientTransport`` over mcp-ws.

    ``connect_options`` go to `mcp_ws.connect` (``token``, ``ssl``, ``settings``,
    ``handshake_timeout``, ...). ``on_partial(event)`` receives the partial results of
    every tool call made through the client (a function or a coroutine function).
    """

    def __init__(self, url: str, *, on_partial: OnPartial | None = None, **connect_options: Any):
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"not a WebSocket URL: {url!r}")
        self.url = url
        self.on_partial = on_partial
        self.connect_options = connect_options

    def __repr__(self) -> str:
        return f"<McpWsTransport(url={self.url!r})>"

    @asynccontextmanager
    async def connect_session(
        self, *, transport_options: TransportOptions | None = None, **session_kwargs: Any
    ) -> AsyncIterator[ClientSession]:
        """Connect and yield a ``ClientSession`` (not initialized, as FastMCP wants it)."""
        options = transport_options or TransportOptions()
        session_class: type[ClientSession] = options.session_class
        if self.on_partial is not None:
            session_class = _reporting(session_class, self.on_partial)
        async with (
            connect(self.url, **self.connect_options) as (read, write),
            session_class(read_stream=read, write_stream=write, **session_kwargs) as session,
        ):
            yield session


def _reporting(base: type[ClientSession], on_partial: OnPartial) -> type[ClientSession]:
    """``base`` whose ``call_tool`` hands the call's partial results to ``on_partial``."""

    class ReportingSession(base):  # type: ignore[valid-type,misc]
        async def call_tool(  # type: ignore[no-untyped-def]
            self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any
        ):
            async def call(meta: dict[str, Any]) -> Any:
                return await super(ReportingSession, self).call_tool(
                    name, arguments, *args, meta=meta, **kwargs
                )

            return await call_reporting_partials(on_partial, kwargs.pop("meta", None), call)

    ReportingSession.__qualname__ = f"Reporting{base.__qualname__}"
    return ReportingSession
