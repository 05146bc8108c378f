"""A LangGraph graph whose tool streams into the graph's own stream:
`python examples/agents/langgraph_graph.py` (needs `pip install 'mcp-ws-streaming[langgraph]'`;
no model and no API key: one node calls the tool).

The demo server's ``count`` tool streams numbers; ``graph.astream(...,
stream_mode="custom")`` yields each one as it is produced, before the tool has finished.
"""

from __future__ import annotations

from typing import Any, TypedDict

import anyio
from langgraph.graph import END, START, StateGraph
from mcp import Client

import mcp_ws
from mcp_ws.cli.demo_app import build_demo_app
from mcp_ws.integrations.langgraph import load_tools


class State(TypedDict, total=False):
    numbers: str


async def main() -> list[dict[str, Any]]:
    streamed: list[dict[str, Any]] = []
    async with (
        mcp_ws.serving(build_demo_app(), port=0) as server,
        Client(mcp_ws.connect(server.url)) as client,
    ):
        tools = {tool.name: tool for tool in await load_tools(client)}

        async def count(state: State) -> State:
            return {"numbers": await tools["count"].ainvoke({"to": 8, "pause": 0.05})}

        builder = StateGraph(State)
        builder.add_node("count", count)
        builder.add_edge(START, "count")
        builder.add_edge("count", END)
        graph = builder.compile()
        async for mode, chunk in graph.astream({}, stream_mode=["custom", "values"]):
            if mode == "custom":
                streamed.append(chunk)
                print(f"  while the tool runs: {chunk}")
            elif chunk:
                print(f"the graph's state at the end: {chunk}")
    return streamed


if __name__ == "__main__":
    anyio.run(main)  # LangGraph runs on asyncio
