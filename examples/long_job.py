"""A long-running job that streams logs and intermediate results: `python examples/long_job.py`.

The tool reports a log line per step (text) and its running totals (structured
content); the client shows both as they come, then the final, complete result.
"""

from __future__ import annotations

import sys

import anyio
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult

import mcp_ws

app = MCPServer("jobs")


@app.tool()
async def crunch(steps: int, ctx: Context, delay: float = 0.1) -> CallToolResult:
    """Process ``steps`` batches, streaming a log line and the running total of each."""
    async with mcp_ws.partial_results(ctx) as out:
        total = 0
        for step in range(1, steps + 1):
            await anyio.sleep(delay)  # the real work would happen here
            total += step * step
            await out.send_text(f"batch {step}/{steps} done\n")
            await out.send_structured({"batches": step, "total": total})
    return out.result()


async def main(steps: int, delay: float) -> None:
    async with mcp_ws.serving(app, port=0) as server:
        async with Client(mcp_ws.connect(server.url)) as client:
            async with mcp_ws.stream_tool(
                client, "crunch", {"steps": steps, "delay": delay}
            ) as job:
                async for event in job:
                    if isinstance(event, mcp_ws.Delta) and event.text:
                        print("log:", event.text, end="")
                    elif isinstance(event, mcp_ws.Delta):
                        print("    intermediate:", event.structured)
            print("final:", job.result.structured_content)


if __name__ == "__main__":
    args = sys.argv[1:]
    anyio.run(main, int(args[0]) if args else 5, float(args[1]) if len(args) > 1 else 0.1)
