"""LangChain tools from an mcp-ws session, streaming into LangGraph:
``tools = await load_tools(session)``.

Needs the extra: ``pip install 'mcp-ws-streaming[langgraph]'``. Each tool of the session
becomes a LangChain ``StructuredTool``; called inside a LangGraph run, its partial results
go to the graph's custom stream while the tool runs, one
``{"tool": name, "seq": n, "text": ...}`` per `mcp_ws.Delta` (``seq`` is the delta's own),
so ``graph.astream(..., stream_mode="custom")`` yields them as they are produced.
Outside a graph run they go to ``on_partial`` only. The tool's value is the text of its
final result; a tool error raises LangChain's ``ToolException``.
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
    from langgraph.config import get_stream_writer
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "mcp_ws.integrations.langgraph needs LangGraph: pip install 'mcp-ws-streaming[langgraph]'"
    ) from exc
from mcp_types import CallToolResult, TextContent, Tool

from ..sdk.stream_tool import Delta, Started
from ._partials import OnPartial, call_reporting_partials

__all__ = ["load_tools"]


async def load_tools(target: Any, *, on_partial: OnPartial | None = None) -> list[BaseTool]:
    """LangChain tools for every tool of ``target`` (a ``ClientSession`` or an
    ``mcp.Client`` on mcp-ws, or on any transport with partial results bound).

    ``on_partial(event)`` also receives each `mcp_ws.Started` and `mcp_ws.Delta`, and may
    return `mcp_ws.integrations.STOP` to end the call with what streamed so far.
    """
    session = getattr(target, "session", target)
    if not callable(getattr(session, "call_tool", None)):
        raise TypeError(f"expected a ClientSession or an mcp.Client, got {type(target).__name__}")
    listed = await session.list_tools()
    return [_tool(session, tool, on_partial) for tool in listed.tools]


def _text(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


def _writer() -> Any:
    """The running graph's custom-stream writer, or None outside a graph run."""
    try:
        return get_stream_writer()
    except (RuntimeError, KeyError):  # no runnable context, or one that is not a graph's
        return None


def _tool(session: Any, tool: Tool, on_partial: OnPartial | None) -> BaseTool:
    name = tool.name

    async def call(**arguments: Any) -> str:
        writer = _writer()

        def report(event: Started | Delta) -> Any:
            if writer is not None and isinstance(event, Delta):
                writer({"tool": name, "seq": event.seq, "text": event.text})
            return on_partial(event) if on_partial is not None else None

        async def send(meta: dict[str, Any]) -> CallToolResult:
            return await session.call_tool(name, arguments, meta=meta)  # type: ignore[no-any-return]

        result = await call_reporting_partials(report, None, send)
        if result.is_error:
            raise ToolException(_text(result) or f"tool {name} failed")
        return _text(result)

    return StructuredTool.from_function(
        coroutine=call,
        name=name,
        description=tool.description or name,
        args_schema=dict(tool.input_schema),
    )
