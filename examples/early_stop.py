"""An agent that acts on early partial output and cancels the rest: `python examples/early_stop.py`.

The tool searches a long list and streams every candidate it checks; the agent stops
as soon as it sees the answer it wants. Leaving the stream cancels the call, and the
server's producer stops at its next send.
"""

from __future__ import annotations

import sys

import anyio
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer

import mcp_ws

app = MCPServer("search")
checked = 0  # how far the server got, to show that the cancel stopped it


@app.tool()
async def search(limit: int, ctx: Context, delay: float = 0.01) -> str:
    """Stream candidates 0..limit-1, one per delta."""
    global checked
    async with mcp_ws.partial_results(ctx) as out:
        for n in range(limit):
            checked = n + 1
            await out.send_text(f"{n}\n", index=None)
            await anyio.sleep(delay)
    return out.text


async def main(wanted: int, delay: float) -> None:
    async with mcp_ws.serving(app, port=0) as server:
        async with Client(mcp_ws.connect(server.url)) as client:
            async with mcp_ws.stream_tool(
                client, "search", {"limit": 1_000_000, "delay": delay}
            ) as found:
                async for event in found:
                    if isinstance(event, mcp_ws.Delta) and int(event.text) == wanted:
                        print(f"agent: found {wanted}, acting on it and cancelling the rest")
                        break
            await anyio.sleep(0.2)
            print(f"server: stopped after {checked} of 1000000 candidates")


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, int(args[0]) if args else 42, float(args[1]) if len(args) > 1 else 0.01)
