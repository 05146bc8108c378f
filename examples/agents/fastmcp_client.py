"""FastMCP's client over mcp-ws, seeing a tool's output while it runs:
`python examples/agents/fastmcp_client.py` (needs `pip install 'mcp-ws-streaming[fastmcp]'`).

The demo server's ``chat`` tool streams an answer token by token; ``on_partial`` prints
each token as it arrives, with how long after the call it came, and the call still
returns the whole answer.
"""

from __future__ import annotations

import time

import anyio
import fastmcp

import mcp_ws
from mcp_ws.cli.demo_app import build_demo_app
from mcp_ws.integrations.fastmcp import McpWsTransport


async def main() -> list[str]:
    arrived: list[str] = []
    async with mcp_ws.serving(build_demo_app(), port=0) as server:
        started = time.perf_counter()

        def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
            if isinstance(event, mcp_ws.Delta):
                arrived.append(event.text)
                print(f"  +{(time.perf_counter() - started) * 1000:5.0f} ms  {event.text!r}")

        async with fastmcp.Client(McpWsTransport(server.url, on_partial=on_partial)) as client:
            result = await client.call_tool("chat", {"prompt": "why stream?", "pace": 0.02})
        whole = "".join(block.text for block in result.content if hasattr(block, "text"))
        print(f"whole answer ({len(arrived)} tokens seen while it ran): {whole}")
    return arrived


if __name__ == "__main__":
    anyio.run(main)  # FastMCP's client runs on asyncio
