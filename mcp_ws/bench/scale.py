"""Scale: many connections to one mcp-ws server, many streams on one connection."""

from __future__ import annotations

import time

import anyio
from mcp import Client

from ..sdk.client import connect
from .app import BIG_SETTINGS, memory_kib
from .scenarios import Figures, Sizes
from .targets import Running

__all__ = ["connections", "streams"]

OPENING_AT_ONCE = 64


async def connections(server: Running, sizes: Sizes) -> Figures:
    """Open ``connections`` sessions to one server, hold them all, call a tool on each.

    Figures: seconds to open them all, calls answered, server RSS per connection (KiB).
    """
    count = sizes.connections
    pid = server.process.pid if server.process else 0
    base = memory_kib(pid)[0]
    gate = anyio.Semaphore(OPENING_AT_ONCE)
    opened = 0
    answered = 0
    all_open = anyio.Event()
    all_answered = anyio.Event()
    release = anyio.Event()

    async def one() -> None:
        nonlocal opened, answered
        await gate.acquire()  # at most OPENING_AT_ONCE handshakes under way
        opening = True
        try:
            async with Client(connect(server.address, settings=BIG_SETTINGS), mode="legacy") as c:
                gate.release()
                opening = False
                opened += 1
                if opened == count:
                    all_open.set()
                await all_open.wait()
                result = await c.call_tool("echo", {"text": "hi"})
                answered += 1
                if result.is_error:
                    raise RuntimeError(f"a call failed: {result.content}")
                if answered == count:
                    all_answered.set()
                await release.wait()
        finally:
            if opening:
                gate.release()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
        await all_open.wait()
        opened_in = time.perf_counter() - started
        await all_answered.wait()
        holding = memory_kib(pid)[0]  # every connection open and served
        release.set()
    return {
        "open_s": opened_in,
        "answered": float(answered),
        "server_kib_each": (holding - base) / count,
    }


async def streams(server: Running, sizes: Sizes) -> Figures:
    """``streams`` calls in flight at once on one connection: each waits on the server
    until all have arrived (60 s at most).

    Figures: the most the server saw in flight, seconds until all answered.
    """
    count = sizes.streams
    most = 0
    async with Client(connect(server.address, settings=BIG_SETTINGS), mode="legacy") as client:
        started = time.perf_counter()

        async def one() -> None:
            nonlocal most
            result = await client.call_tool("hold", {"until": count, "seconds": 60.0})
            most = max(most, int(result.structured_content["result"]))

        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(one)
        elapsed = time.perf_counter() - started
    return {"in_flight": float(most), "all_answered_s": elapsed}
