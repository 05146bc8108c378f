"""An MCPServer served over mcp-ws: `python examples/server.py [--port 8765]`."""

from __future__ import annotations

import argparse

import anyio
from mcp.server.mcpserver import Context, MCPServer

import mcp_ws

app = MCPServer("example")


@app.tool()
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@app.tool()
async def countdown(n: int, ctx: Context) -> str:
    """Count down, reporting progress on the way."""
    for i in range(n, 0, -1):
        await ctx.report_progress(n - i + 1, n, f"{i}...")
        await anyio.sleep(0.05)
    return "liftoff"


async def main(port: int) -> None:
    async with mcp_ws.serving(app, host="127.0.0.1", port=port) as server:
        print(server.url, flush=True)  # the only change from stdio: serve over mcp-ws
        await anyio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    anyio.run(main, parser.parse_args().port)
