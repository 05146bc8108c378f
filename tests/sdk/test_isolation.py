"""Paused readers slow only their own producers (docs/protocol.md section 6), on asyncio
and trio: a plain call beside 100 streams whose readers stopped is answered, and the
client never holds more than the documented bound."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp_types import TextContent

import mcp_ws
from mcp_ws.protocol import Connection
from mcp_ws.sdk.bridge import BridgeReadStream

from ..livehelpers import live_server

pytestmark = pytest.mark.anyio

PAUSED = 100
CHUNK = 16384  # characters per delta: a paused stream's window fills in ~16 deltas


def client_core(read: object) -> Connection:
    """The sans-I/O core under ``mcp_ws.connect``'s read stream (for its byte counts)."""
    assert isinstance(read, BridgeReadStream)
    bridge = read.bridge
    assert bridge is not None
    mux = bridge.mux
    assert mux is not None
    return mux.core


async def wait_until_windows_are_full(core: Connection, streams: int) -> None:
    """Until ``streams`` stream windows' worth of deltas are held unread (or 20 s pass)."""
    window = core.local_settings.initial_window
    with anyio.fail_after(20):
        while core.buffered_received < streams * (window - 2 * CHUNK):
            await anyio.sleep(0.01)


@pytest.mark.timeout(60)
async def test_a_plain_call_is_answered_beside_100_paused_streams() -> None:
    async with live_server() as (server, _), AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(mcp_ws.connect(server.url))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        core = client_core(read)
        streams = []
        for _ in range(PAUSED):
            stream = await stack.enter_async_context(
                mcp_ws.stream_tool(session, "bulk", {"chunks": 1000, "size": CHUNK})
            )
            with anyio.fail_after(10):
                assert isinstance(await stream.__anext__(), mcp_ws.Started)
                assert isinstance(await stream.__anext__(), mcp_ws.Delta)
            streams.append(stream)  # ... and then nobody reads it any more
        # every producer ran ahead of its reader by one window, then had to stop
        await wait_until_windows_are_full(core, PAUSED)
        assert core.buffered_received <= core.local_settings.receive_memory_bound
        held = core.buffered_received
        with anyio.fail_after(10):
            result = await session.call_tool("add", {"a": 2, "b": 3})
        assert [b.text for b in result.content if isinstance(b, TextContent)] == ["5"]
        # the paused streams did not grow meanwhile: one window each, no more
        await anyio.sleep(0.2)
        window = core.local_settings.initial_window
        assert held <= core.buffered_received <= PAUSED * window + core._assembly.buffered
        # and a paused stream still has everything, in order, when its reader comes back
        with anyio.fail_after(30):
            events = [event async for event in streams[0]]
        assert isinstance(events[-1], mcp_ws.Completed)
        deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
        assert [d.seq for d in deltas] == list(range(2, 1001))
        for stream in streams[1:]:
            stream.cancel()


@pytest.mark.timeout(60)
async def test_a_paused_stream_holds_its_slot_until_it_is_read() -> None:
    """A stream whose data is unread keeps counting toward max_streams: the memory it
    holds is bounded by the slots, and later calls queue instead of growing it."""
    settings = mcp_ws.Settings(max_streams=2)
    async with live_server() as (server, _), AsyncExitStack() as stack:
        read, write = await stack.enter_async_context(mcp_ws.connect(server.url, settings=settings))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        core = client_core(read)
        stream = await stack.enter_async_context(
            mcp_ws.stream_tool(session, "bulk", {"chunks": 4, "size": 100})
        )
        with anyio.fail_after(20):
            assert isinstance(await stream.__anext__(), mcp_ws.Started)
            # the call ends on the wire, but its deltas are still unread
            while core.open_stream_count or not core.buffered_received:
                await anyio.sleep(0.01)
            assert core.stream_slots == 1
            assert (await session.call_tool("add", {"a": 1, "b": 1})).content
            rest = [event async for event in stream]
        assert isinstance(rest[-1], mcp_ws.Completed)
        assert core.buffered_received == 0
        assert core.stream_slots == 2
