"""``mcp_ws.asgi`` driven by an in-memory ASGI server, on asyncio and trio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp_types import TextContent

import mcp_ws
from mcp_ws.sdk import client_streams
from mcp_ws.transport.resume import ResumeLimits

from ..apps import Probe, build_app
from .test_streaming import collect

pytestmark = pytest.mark.anyio


class FakeAsgiClient:
    """The client end of an in-memory ASGI WebSocket (a `MessageChannel`)."""

    def __init__(self, to_app: Any, from_app: Any, subprotocol: str | None) -> None:
        self.subprotocol = subprotocol
        self._to_app = to_app
        self._from_app = from_app
        self._closed = False

    async def receive(self) -> bytes | str | None:
        try:
            message = await self._from_app.receive()
        except anyio.EndOfStream:
            return None
        if message["type"] == "websocket.send":
            data: bytes | str | None = message.get("bytes")
            return data if data is not None else message["text"]
        return None  # websocket.close

    async def send(self, messages: Sequence[bytes | str]) -> None:
        for m in messages:
            key = "text" if isinstance(m, str) else "bytes"
            await self._to_app.send({"type": "websocket.receive", key: m})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(anyio.BrokenResourceError):  # the app already left
                await self._to_app.send({"type": "websocket.disconnect", "code": code})

    async def aclose(self) -> None:
        await self.close()


@asynccontextmanager
async def asgi_websocket(
    endpoint: Any, headers: dict[str, str], subprotocols: list[str]
) -> AsyncIterator[tuple[dict[str, Any], FakeAsgiClient]]:
    to_app_send, to_app_recv = anyio.create_memory_object_stream[Any](1000)
    from_app_send, from_app_recv = anyio.create_memory_object_stream[Any](1000)
    scope = {
        "type": "websocket",
        "path": "/mcp",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "subprotocols": subprotocols,
        "extensions": {"websocket.http.response": {}},
    }

    async def run_app() -> None:
        async with to_app_recv, from_app_send:
            await endpoint(scope, to_app_recv.receive, from_app_send.send)

    async with anyio.create_task_group() as tg, to_app_send, from_app_recv:
        tg.start_soon(run_app)
        await to_app_send.send({"type": "websocket.connect"})
        first = await from_app_recv.receive()
        channel = FakeAsgiClient(to_app_send, from_app_recv, first.get("subprotocol"))
        yield first, channel
        await channel.aclose()


async def test_a_session_through_the_asgi_endpoint() -> None:
    endpoint = mcp_ws.asgi(build_app())
    with anyio.fail_after(10):
        async with asgi_websocket(endpoint, {}, ["mcp-ws.v1", "mcp"]) as (first, channel):
            assert first == {"type": "websocket.accept", "subprotocol": "mcp-ws.v1"}
            async with client_streams(channel) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                result = await s.call_tool("echo", {"text": "via asgi"})
                block = result.content[0]
                assert isinstance(block, TextContent)
                assert block.text == "via asgi"


async def test_asgi_refusals_are_http_answers() -> None:
    endpoint = mcp_ws.asgi(build_app(), auth=mcp_ws.bearer_token("k"))
    with anyio.fail_after(10):
        async with asgi_websocket(endpoint, {"Origin": "http://evil.example"}, ["mcp-ws.v1"]) as (
            first,
            _,
        ):
            assert first["type"] == "websocket.http.response.start"
            assert first["status"] == 403
        async with asgi_websocket(endpoint, {}, ["mcp-ws.v1"]) as (first, _):
            assert first["status"] == 401
            assert (b"www-authenticate", b"Bearer") in first["headers"]
        async with asgi_websocket(endpoint, {"Authorization": "Bearer k"}, ["chat"]) as (first, _):
            assert first["status"] == 400


@asynccontextmanager
async def lifespan(endpoint: Any) -> AsyncIterator[None]:
    """Run the ASGI lifespan of ``endpoint`` around the block, as an ASGI server does."""
    to_app_send, to_app_recv = anyio.create_memory_object_stream[Any](10)
    from_app_send, from_app_recv = anyio.create_memory_object_stream[Any](10)

    async def run() -> None:
        async with to_app_recv, from_app_send:
            await endpoint({"type": "lifespan"}, to_app_recv.receive, from_app_send.send)

    async with anyio.create_task_group() as tg, to_app_send, from_app_recv:
        tg.start_soon(run)
        await to_app_send.send({"type": "lifespan.startup"})
        assert (await from_app_recv.receive()) == {"type": "lifespan.startup.complete"}
        yield
        await to_app_send.send({"type": "lifespan.shutdown"})
        assert (await from_app_recv.receive()) == {"type": "lifespan.shutdown.complete"}


async def page_that_goes(
    endpoint: Any, count: int, after: int, gone: anyio.Event | None = None
) -> str:
    """A page streaming ``count`` tokens, that goes after ``after`` deltas (no cancel
    reaches the app); ``gone`` is set then. Returns once the endpoint's handler for it
    did (with the call, when it outlives its session): the call's handle."""
    async with asgi_websocket(endpoint, {}, ["mcp-ws.v1"]) as (_, channel):
        async with client_streams(channel) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            arguments = {"count": count, "pause": 0.01}
            async with mcp_ws.stream_tool(s, "generate", arguments) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta) and event.seq == after:
                        await channel.close()  # the page went
                        break
        if gone is not None:
            gone.set()
    assert stream.handle is not None
    return stream.handle


async def vanish_and_attach(endpoint: Any) -> list[mcp_ws.StreamEvent]:
    """A streamed call whose page goes after 3 deltas, then a new session reading it
    on after seq 3."""
    handle = await page_that_goes(endpoint, 40, 3)
    async with asgi_websocket(endpoint, {}, ["mcp-ws.v1"]) as (_, channel):
        async with client_streams(channel) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            async with mcp_ws.attach(s, handle, after=3) as again:
                return await collect(again)


async def test_under_the_lifespan_a_call_outlives_its_asgi_session() -> None:
    """Under the ASGI lifespan, a call whose page went runs on and is read to its end;
    without it (mounted, no lifespan), it ends with its session, and a reader gets its
    outcome: cancelled."""
    limits = ResumeLimits(max_detached=0)  # a dropped link ends its session at once
    with anyio.fail_after(30):
        probe = Probe()
        endpoint = mcp_ws.asgi(build_app(probe), resume_grace=5, resume_limits=limits)
        async with lifespan(endpoint):
            hosted = await vanish_and_attach(endpoint)
        assert [e.seq for e in hosted if isinstance(e, mcp_ws.Delta)] == list(range(4, 41))
        assert isinstance(hosted[-1], mcp_ws.Completed)
        assert not probe.stream_cancelled.is_set()
        probe = Probe()
        endpoint = mcp_ws.asgi(build_app(probe), resume_grace=5, resume_limits=limits)
        alone = await vanish_and_attach(endpoint)
        assert isinstance(alone[-1], mcp_ws.Failed)
        assert alone[-1].error.error.code == -32003  # type: ignore[attr-defined]
        assert probe.stream_cancelled.is_set()


async def test_the_lifespans_end_cancels_the_calls_still_running() -> None:
    """A call whose page went runs on for its grace (30 s), its WebSocket's handler with
    it; the lifespan's end cancels it, and that handler returns."""
    probe = Probe()
    limits = ResumeLimits(max_detached=0)
    endpoint = mcp_ws.asgi(build_app(probe), resume_grace=30, resume_limits=limits)
    vanished = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as server:
            async with lifespan(endpoint):
                # its page's handler returns when the call ends
                server.start_soon(page_that_goes, endpoint, 100_000, 1, vanished)
                await vanished.wait()
                await anyio.sleep(0.3)
                assert not probe.stream_cancelled.is_set()  # it runs on
    assert probe.stream_cancelled.is_set()
