"""The server every transport benchmark talks to: `python bench/bench_server.py ws|stdio|http [port]`."""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

import mcp_ws

app = MCPServer("bench")
mcp_ws.advertise_streaming(app)


@app.tool()
async def echo(text: str) -> str:
    """Return the text."""
    return text


@app.tool()
async def stream(count: int, ctx: Context) -> str:
    """``count`` text deltas through the streaming extension."""
    async with mcp_ws.partial_results(ctx) as out:
        for i in range(count):
            await out.send_text(f"tok{i} ")
    return f"{count} deltas"


@app.tool()
async def progress(count: int, ctx: Context) -> str:
    """``count`` progress notifications carrying a token each (the stock emulation)."""
    for i in range(count):
        await ctx.report_progress(i + 1, count, f"tok{i} ")
    return f"{count} progress notifications"


async def _serve_ws() -> None:
    async with mcp_ws.serving(app, port=0) as server:
        print(server.url, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "ws":
        anyio.run(_serve_ws)
    elif kind == "stdio":
        app.run("stdio")
    else:
        import logging

        logging.disable(logging.INFO)
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
