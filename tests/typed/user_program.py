"""A small user program: mypy --strict must accept it (tests/project/test_typing.py)."""

from typing import Any

import anyio
from mcp import ClientSession
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult

import mcp_ws

app = MCPServer("typed")


@app.tool(meta=mcp_ws.STREAMS)
async def generate(prompt: str, ctx: Context[Any, Any]) -> CallToolResult:
    async with mcp_ws.partial_results(ctx) as out:
        await out.send_text(prompt)
    return out.result()


async def main() -> None:
    async with mcp_ws.serving(app, port=0) as server:
        async with (
            mcp_ws.connect(server.url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            async with mcp_ws.stream_tool(session, "generate", {"prompt": "hi"}) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        print(event.text)
            print(stream.result.content)


anyio.run(main)
