"""Client programs the chaos tests run in processes of their own (and kill).

``python -m tests.peers stall URL N BACKEND``: open ``N`` streaming calls whose
producers outrun them, read each one's first delta, print ``ready``, then never read
again (for at most 60 s).
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

import anyio
from mcp.client.session import ClientSession

import mcp_ws


async def stall(url: str, count: int) -> None:
    async with AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(mcp_ws.connect(url))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        for _ in range(count):
            stream = await stack.enter_async_context(
                mcp_ws.stream_tool(session, "bulk", {"chunks": 1000, "size": 16384})
            )
            await stream.__anext__()  # Started
            await stream.__anext__()  # the first delta
        print("ready", flush=True)
        await anyio.sleep(60)


if __name__ == "__main__":
    mode, url, count, backend = sys.argv[1:5]
    if mode != "stall":
        raise SystemExit(f"unknown mode {mode!r}")
    anyio.run(stall, url, int(count), backend=backend)
