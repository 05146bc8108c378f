"""The server every transport benchmark talks to: `python bench/bench_server.py ws|stdio|http [port]`."""

from __future__ import annotations

import sys

import anyio
from mcp.server.mcpserver import MCPServer

app = MCPServer("bench")


@app.tool()
async def echo(text: str) -> str:
    """Return the text."""
    return text


async def _serve_ws() -> None:
    import mcp_ws

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
