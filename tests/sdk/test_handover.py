"""Client handover (`mcp_ws.sdk.handover`): a graceful GOAWAY moves new requests to a
fresh connection while calls in flight finish; a lost connection fails its calls and
the next request connects again; the 2025-11-25 era replays the session's handshake."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, TextContent

import mcp_ws
from mcp_ws.protocol import ErrorCode
from mcp_ws.protocol.events import StreamCancelled
from mcp_ws.sdk.bridge import REQUEST_REFUSED
from mcp_ws.sdk.calls import handling_bridge
from mcp_ws.sdk.handover import RESEND_LIMIT, HandoverReadStream
from mcp_ws.sdk.server import serving_sessions

from ..apps import Probe, build_app
from ..livehelpers import live_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def goaway(server: mcp_ws.McpWsServer, reason: str = "restarting") -> int:
    """Send a graceful GOAWAY on every connection of ``server`` (it keeps listening)."""
    muxes = list(server._muxes)
    for mux in muxes:
        mux.close(ErrorCode.NO_ERROR, reason)
    return len(muxes)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Background:
    """A server on a fixed port, run in a task of its own so that it can stop and start
    again while a client that outlives it stays open."""

    def __init__(self, tg: anyio.abc.TaskGroup, port: int, probe: Probe | None = None) -> None:
        self._tg = tg
        self.port = port
        self.probe = probe or Probe()
        self.server: mcp_ws.McpWsServer | None = None
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    async def start(self) -> mcp_ws.McpWsServer:
        started = anyio.Event()
        self._stop, self._stopped = anyio.Event(), anyio.Event()

        async def run() -> None:
            try:
                async with mcp_ws.serving(
                    build_app(self.probe), port=self.port, shutdown_grace=5
                ) as server:
                    self.server = server
                    started.set()
                    await self._stop.wait()
            finally:
                self._stopped.set()

        self._tg.start_soon(run)
        with anyio.fail_after(5):
            await started.wait()
        assert self.server is not None
        return self.server

    async def stop(self) -> None:
        self._stop.set()
        with anyio.fail_after(10):
            await self._stopped.wait()


@asynccontextmanager
async def session(
    url: str, **options: object
) -> AsyncIterator[tuple[ClientSession, HandoverReadStream]]:
    async with mcp_ws.connect(url, **options) as (read, write), ClientSession(read, write) as s:  # type: ignore[arg-type]
        await s.initialize()
        assert isinstance(read, HandoverReadStream)
        yield s, read


async def test_after_goaway_new_calls_move_and_calls_in_flight_finish() -> None:
    async with live_server() as (server, probe), session(server.url) as (s, read):
        assert read.handover.connections == 1
        async with anyio.create_task_group() as tg:
            slow: list[CallToolResult] = []

            async def call_slowly() -> None:
                slow.append(await s.call_tool("sleepy", {"seconds": 1.0}))

            tg.start_soon(call_slowly)
            with anyio.fail_after(5):
                await probe.started.wait()
            first = read.bridge
            assert first is not None
            old = first.mux
            assert old is not None
            assert goaway(server) == 1
            with anyio.fail_after(5):
                assert text_of(await s.call_tool("add", {"a": 2, "b": 3})) == "5"
            assert read.handover.connections == 2
            assert read.bridge is not first
            assert not old.finished  # the slow call still runs there
        assert text_of(slow[0]) == "rested"  # finished on the connection going away
        assert old is not None
        with anyio.fail_after(5):
            await old.wait_finished()  # which then closed
        assert old.termination is not None
        assert old.termination.error_code is ErrorCode.NO_ERROR
        assert text_of(await s.call_tool("echo", {"text": "still"})) == "still"
        assert read.handover.connections == 2


async def test_handover_false_keeps_to_one_connection() -> None:
    async with (
        live_server() as (server, _),
        mcp_ws.connect(server.url, handover=False) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        goaway(server)
        with anyio.fail_after(5), pytest.raises(MCPError):
            await s.call_tool("add", {"a": 1, "b": 1})


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_new_connection_replays_the_handshake_in_the_2025_era(mode: str) -> None:
    async with live_server() as (server, _):
        async with Client(mcp_ws.connect(server.url), mode=mode) as client:
            assert text_of(await client.call_tool("client_name", {})) == "mcp"
            goaway(server)
            with anyio.fail_after(5):
                # On the new connection the server knows the client: it was initialized.
                assert text_of(await client.call_tool("client_name", {})) == "mcp"
            legacy = client.protocol_version == "2025-11-25"
            assert legacy is (mode == "legacy")


async def test_a_lost_connection_fails_its_calls_and_the_next_request_reconnects() -> None:
    async with anyio.create_task_group() as tg:
        background = Background(tg, free_port())
        first = await background.start()
        # Without resume (docs/protocol.md section 9; tests/sdk/test_resume.py has it on).
        async with session(first.url, resume=False) as (s, read):
            async with anyio.create_task_group() as calls:

                async def call() -> None:
                    with pytest.raises(MCPError) as caught:
                        await s.call_tool("sleepy", {"seconds": 30})
                    assert caught.value.error.code == CONNECTION_CLOSED

                calls.start_soon(call)
                with anyio.fail_after(5):
                    await background.probe.started.wait()
                for mux in list(first._muxes):
                    await mux._channel.aclose()  # the TCP connection drops: no GOAWAY
            await background.stop()
            await background.start()  # the same URL, a new server
            with anyio.fail_after(10):
                assert text_of(await s.call_tool("add", {"a": 1, "b": 2})) == "3"
            assert read.handover.connections == 2
        await background.stop()


async def test_with_no_server_a_request_fails_after_backing_off_and_the_next_tries_again() -> None:
    async with anyio.create_task_group() as tg:
        background = Background(tg, free_port())
        server = await background.start()
        async with session(server.url) as (s, read):
            await background.stop()  # GOAWAY, then the server is gone: nobody listens
            started = time.monotonic()
            with anyio.fail_after(20), pytest.raises(MCPError) as caught:
                await s.call_tool("add", {"a": 1, "b": 1})
            assert caught.value.error.code == CONNECTION_CLOSED
            # It backed off between its attempts (at least half of 0.1 + 0.2 + 0.4 + 0.8 s).
            assert time.monotonic() - started >= 0.7
            await background.start()
            with anyio.fail_after(10):
                assert text_of(await s.call_tool("add", {"a": 2, "b": 2})) == "4"
            assert read.handover.connections == 2
        await background.stop()


async def test_a_refused_streaming_call_is_resent_with_its_route() -> None:
    """A streaming call refused unprocessed is sent again elsewhere: its deltas still go
    straight to its `ToolStream` (the route travels with the request)."""
    async with live_server() as (server, probe), session(server.url) as (s, read):
        args = {"count": 5, "pause": 0.2}
        async with mcp_ws.stream_tool(s, "generate", args) as stream:
            with anyio.fail_after(5):
                await probe.stream_started.wait()
            bridge = read.bridge
            assert bridge is not None
            assert bridge.mux is not None
            (call,) = list(bridge.calls)
            assert call.route is stream
            # As the core reports a stream the server refused (REFUSED_STREAM after its
            # GOAWAY): the handler stops, and the call goes out again.
            bridge.mux.cancel(call.stream_id, ErrorCode.REFUSED_STREAM, "refused")
            refused = StreamCancelled(
                stream_id=call.stream_id,
                error_code=ErrorCode.REFUSED_STREAM,
                reason="refused",
                remote=True,
            )
            bridge.on_events([refused])
            with anyio.fail_after(10):
                events = [event async for event in stream]
        deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
        assert isinstance(events[-1], mcp_ws.Completed)
        assert "".join(d.text for d in deltas) == "t0 t1 t2 t3 t4 "
        assert stream.direct


async def test_a_server_that_sends_every_connection_away_is_not_spun_against() -> None:
    """A server that refuses every request unprocessed and sends its connection away:
    the request is resent a bounded number of times, with backoff, then fails clearly."""

    async def go_away_at_once(read: Any, write: Any) -> None:
        bridge = handling_bridge()
        assert bridge is not None
        assert bridge.mux is not None
        async for item in read:
            call = bridge.calls.peer(getattr(item.message, "id", None))
            if call is not None:
                bridge.mux.cancel(call.stream_id, ErrorCode.REFUSED_STREAM, "not here")
            bridge.mux.close(ErrorCode.NO_ERROR, "not here")

    async with serving_sessions(go_away_at_once, port=0) as server:
        async with (
            mcp_ws.connect(server.url) as (read, write),
            ClientSession(read, write) as s,
        ):
            assert isinstance(read, HandoverReadStream)
            started = time.monotonic()
            with anyio.fail_after(30), pytest.raises(MCPError) as caught:
                await s.initialize()
            assert caught.value.error.code == REQUEST_REFUSED
            assert "refused unprocessed by 6 connections" in caught.value.error.message
            # at most one connection per resend, and they backed off
            assert read.handover.connections <= 1 + RESEND_LIMIT
            assert time.monotonic() - started >= 0.5
