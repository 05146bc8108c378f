"""Call the example server: `python examples/client.py [ws://127.0.0.1:8765/mcp]`."""

from __future__ import annotations

import sys

import anyio
from mcp.client.session import ClientSession

import mcp_ws


async def main(url: str) -> None:
    async with mcp_ws.connect(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        print("tools:", ", ".join(tool.name for tool in tools.tools))
        print("add:", (await session.call_tool("add", {"a": 2, "b": 3})).content[0].text)  # type: ignore[union-attr]

        async def progress(done: float, total: float | None, message: str | None) -> None:
            print(f"  progress {done:.0f}/{total:.0f} {message}")

        result = await session.call_tool("countdown", {"n": 3}, progress_callback=progress)
        print("countdown:", result.content[0].text)  # type: ignore[union-attr]


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/mcp")
