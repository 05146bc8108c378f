"""Client programs the chaos tests run in processes of their own (and kill or stop).

``python -m tests.peers MODE URL N BACKEND``, with MODE one of:

- ``stall``: open ``N`` streaming calls whose producers outrun them, read each one's
  first delta, print ``ready``, then never read again;
- ``stream``: open ``N`` streaming calls, print ``ready`` once each has a delta, and
  keep reading all of them;
- ``idle``: connect with keepalive every 0.5 s, call one tool, print ``ready``, then
  sit idle (the test stops the process with SIGSTOP: a peer that goes silent).

Each runs for at most 60 s.
"""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack

import anyio
from mcp.client.session import ClientSession

import mcp_ws


async def main(mode: str, url: str, count: int) -> None:
    settings = mcp_ws.Settings(ping_interval=0.5) if mode == "idle" else None
    async with AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(mcp_ws.connect(url, settings=settings))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        streams = []
        for _ in range(count if mode != "idle" else 0):
            stream = await stack.enter_async_context(
                mcp_ws.stream_tool(session, "bulk", {"chunks": 100_000, "size": 1024})
            )
            await stream.__anext__()  # Started
            await stream.__anext__()  # the first delta
            streams.append(stream)
        if mode == "idle":
            await session.call_tool("echo", {"text": "hello"})
        print("ready", flush=True)
        with anyio.move_on_after(60):
            if mode == "stream":
                async with anyio.create_task_group() as tg:
                    for stream in streams:
                        tg.start_soon(drain, stream)
            await anyio.sleep_forever()


async def drain(stream: mcp_ws.ToolStream) -> None:
    async for _ in stream:
        pass


if __name__ == "__main__":
    mode, url, count, backend = sys.argv[1:5]
    if mode not in ("stall", "stream", "idle"):
        raise SystemExit(f"unknown mode {mode!r}")
    anyio.run(main, mode, url, int(count), backend=backend)
