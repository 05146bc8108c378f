"""LangChain tools from an mcp-ws session inside a LangGraph graph
(`mcp_ws.integrations.langgraph`), with the real packages: deltas reach the graph's
custom stream while the tool runs, in order; the tool's value is the whole result;
``STOP`` ends the call with what streamed and cancels the server's handler.

asyncio only: LangGraph runs its tasks on asyncio (``RuntimeError: no running event
loop`` on trio). The session under it is `mcp_ws.connect`, tested on both elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import anyio
import pytest
from langchain_core.tools import BaseTool, ToolException
from langgraph.graph import END, START, StateGraph
from mcp import Client
from mcp.client.session import ClientSession

import mcp_ws
from mcp_ws.integrations import STOP
from mcp_ws.integrations.langgraph import load_tools

from ..apps import Probe
from ..livehelpers import live_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


class State(TypedDict, total=False):
    answer: str


@asynccontextmanager
async def tools_of_a_live_server(
    **options: Any,
) -> AsyncIterator[tuple[dict[str, BaseTool], Probe]]:
    async with (
        live_server() as (server, probe),
        mcp_ws.connect(server.url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {tool.name: tool for tool in await load_tools(session, **options)}
        yield tools, probe


def one_call_graph(tool: BaseTool, arguments: dict[str, Any]) -> Any:
    """A graph whose one node calls ``tool`` (no model needed to exercise the tool)."""

    async def call(state: State) -> State:
        return {"answer": await tool.ainvoke(arguments)}

    builder = StateGraph(State)
    builder.add_node("call", call)
    builder.add_edge(START, "call")
    builder.add_edge("call", END)
    return builder.compile()


async def test_deltas_reach_the_graphs_custom_stream_while_the_tool_runs() -> None:
    with anyio.fail_after(30):
        async with tools_of_a_live_server() as (tools, probe):
            graph = one_call_graph(tools["generate"], {"count": 5, "pause": 0.05})
            seen: list[tuple[str, Any, int]] = []
            async for mode, chunk in graph.astream({}, stream_mode=["custom", "values"]):
                seen.append((mode, chunk, probe.sent))
    custom = [(chunk, sent) for mode, chunk, sent in seen if mode == "custom"]
    assert [chunk for chunk, _ in custom] == [
        {"tool": "generate", "seq": n + 1, "text": f"t{n} "} for n in range(5)
    ]
    assert all(sent < 5 for _, sent in custom[:-1])  # yielded while the tool still ran
    assert seen[-1][:2] == ("values", {"answer": "t0 t1 t2 t3 t4 "})


async def test_stop_ends_the_tool_with_what_streamed_and_cancels_the_handler() -> None:
    def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
        return STOP if isinstance(event, mcp_ws.Delta) and event.seq == 3 else None

    with anyio.fail_after(30):
        async with tools_of_a_live_server(on_partial=on_partial) as (tools, probe):
            graph = one_call_graph(tools["generate"], {"count": 100_000, "pause": 0.01})
            final = await graph.ainvoke({})
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
            assert probe.sent < 100
    assert final == {"answer": "t0 t1 t2 "}


async def test_a_tool_error_is_a_tool_exception_and_an_mcp_client_works_too() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, _), Client(mcp_ws.connect(server.url)) as client:
            seen: list[str] = []
            tools = {
                t.name: t
                for t in await load_tools(
                    client,
                    on_partial=lambda e: (
                        seen.append(e.text) if isinstance(e, mcp_ws.Delta) else None
                    ),
                )
            }
            assert await tools["add"].ainvoke({"a": 2, "b": 3}) == "5"  # outside a graph
            with pytest.raises(ToolException):
                await tools["stream_then_fail"].ainvoke({})
    assert seen == ["partial ", "output"]  # the deltas before the error


async def test_load_tools_refuses_what_is_not_a_session() -> None:
    with pytest.raises(TypeError, match=r"expected a ClientSession or an mcp\.Client"):
        await load_tools(object())
