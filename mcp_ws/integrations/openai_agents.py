"""An MCP server for the OpenAI Agents SDK that speaks mcp-ws:
``Agent(mcp_servers=[MCPServerMcpWs(url)])``.

Needs the extra: ``pip install 'mcp-ws-streaming[openai-agents]'``. It implements the
SDK's public ``agents.mcp.MCPServer`` interface (not its private session class): use it
as an async context manager, or with ``connect()`` and ``cleanup()`` in one task, like
the SDK's own servers. ``on_partial`` receives the partial results of every tool call the
agent makes through it while the tool runs (the SDK has no event for them), and may
return `mcp_ws.integrations.STOP` (see `mcp_ws.integrations`).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

try:
    from agents.mcp import MCPServer
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "mcp_ws.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'mcp-ws-streaming[openai-agents]'"
    ) from exc
from mcp import ClientSession
from mcp_types import CallToolResult, GetPromptResult, ListPromptsResult
from mcp_types import Tool as MCPTool

from ..sdk.client import connect
from ._partials import OnPartial, call_reporting_partials

__all__ = ["MCPServerMcpWs"]


class MCPServerMcpWs(MCPServer):
    """An ``agents.mcp.MCPServer`` over mcp-ws.

    ``connect_options`` go to `mcp_ws.connect` (``token``, ``ssl``, ``settings``, ...);
    ``server_options`` to the SDK's ``MCPServer`` (``require_approval``,
    ``use_structured_content``, ...).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        on_partial: OnPartial | None = None,
        server_options: dict[str, Any] | None = None,
        **connect_options: Any,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"not a WebSocket URL: {url!r}")
        super().__init__(**(server_options or {}))
        self.url = url
        self._name = name or f"mcp-ws: {url}"
        self.on_partial = on_partial
        self.connect_options = connect_options
        self._stack: AsyncExitStack | None = None
        self.session: ClientSession | None = None

    @property
    def name(self) -> str:
        """A readable name for the server."""
        return self._name

    async def connect(self) -> None:
        """Open the WebSocket and initialize the MCP session."""
        if self.session is not None:
            return
        stack = AsyncExitStack()
        try:
            read, write = await stack.enter_async_context(connect(self.url, **self.connect_options))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
        except BaseException:
            await stack.aclose()
            raise
        self._stack, self.session = stack, session

    async def cleanup(self) -> None:
        """Close the session and the WebSocket (calls in flight are cancelled)."""
        stack, self._stack, self.session = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> MCPServerMcpWs:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cleanup()

    def _live(self) -> ClientSession:
        if self.session is None:
            raise RuntimeError(f"{self.name} is not connected: use 'async with' or connect()")
        return self.session

    async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[MCPTool]:
        """The server's tools."""
        return list((await self._live().list_tools()).tools)

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> CallToolResult:
        """Call a tool; with ``on_partial``, its partial results go there while it runs."""
        session = self._live()
        if self.on_partial is None:
            return await session.call_tool(tool_name, arguments, meta=meta)  # type: ignore[arg-type]

        async def send(with_token: dict[str, Any]) -> CallToolResult:
            return await session.call_tool(tool_name, arguments, meta=with_token)  # type: ignore[call-overload,no-any-return]

        return await call_reporting_partials(self.on_partial, meta, send)

    async def list_prompts(self) -> ListPromptsResult:
        """The server's prompts."""
        return await self._live().list_prompts()

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> GetPromptResult:
        """One prompt, filled in."""
        return await self._live().get_prompt(name, arguments)
