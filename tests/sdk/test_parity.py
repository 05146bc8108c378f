"""Client parity: the rows of docs/parity.md that the Python client keeps, each also
tested in the TypeScript suite (js/test/parity.test.ts) with the same words."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

import mcp_ws
from mcp_ws.protocol import ErrorCode
from mcp_ws.sdk.handover import HandoverReadStream
from mcp_ws.transport.tcp import create_tcp_listener

from ..livehelpers import app_process, failing_call, live_server, session_to

pytestmark = pytest.mark.anyio


async def test_a_server_that_never_answers_the_handshake_is_a_handshake_error() -> None:
    """TCP accepted, no HTTP answer: `HandshakeError` with the TypeScript client's words,
    not a bare TimeoutError, and nothing left running."""
    held: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            held.append(stream)
            await anyio.sleep_forever()

    listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    url = f"ws://127.0.0.1:{port}/mcp"
    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold, tg)
            with pytest.raises(mcp_ws.HandshakeError) as caught:
                async with mcp_ws.connect(url, handshake_timeout=0.3):
                    pytest.fail("connected to a server that never answered")
            assert str(caught.value) == f"no WebSocket handshake with {url} within 300 ms"
            assert caught.value.status is None
            assert len(held) == 1
            tg.cancel_scope.cancel()


async def test_stream_tool_streams_over_the_json_text_subprotocol_too() -> None:
    """Start, deltas in order, completed: as over mcp-ws.v1, without stream credit."""
    async with live_server() as (server, _):
        with anyio.fail_after(30):
            async with (
                mcp_ws.connect(server.url, subprotocols=["mcp"]) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                async with mcp_ws.stream_tool(session, "generate", {"count": 5}) as stream:
                    events = [event async for event in stream]
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["Started", "Delta", "Delta", "Delta", "Delta", "Delta", "Completed"]
    assert "".join(e.text for e in events if isinstance(e, mcp_ws.Delta)) == "t0 t1 t2 t3 t4 "


async def test_after_goaway_the_client_connects_anew_at_once() -> None:
    """Not with the next request: the session stays reachable, and the next call does
    not wait for a handshake (the TypeScript client does the same)."""
    async with live_server() as (server, _):
        with anyio.fail_after(20):
            async with (
                mcp_ws.connect(server.url) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                assert isinstance(read, HandoverReadStream)
                first = read.bridge
                for mux in list(server._muxes):
                    mux.close(ErrorCode.NO_ERROR, "restarting")
                while read.handover.connections < 2:  # no request is sent meanwhile
                    await anyio.sleep(0.01)
                while read.bridge is None or read.bridge is first:
                    await anyio.sleep(0.01)
                assert first is not None
                assert first.mux is not None
                with anyio.fail_after(5):
                    await first.mux.wait_finished()
                assert read.handover.connections == 2
                result = await session.call_tool("add", {"a": 2, "b": 3})
                assert result.content[0].text == "5"  # type: ignore[union-attr]
                assert read.handover.connections == 2


LOST = (
    "connection closed (INTERNAL_ERROR from the peer, WebSocket 1006): "
    "the connection was lost (WebSocket 1006)"
)


async def test_a_server_killed_mid_call_fails_it_with_the_same_code_and_words(
    anyio_backend: str,
) -> None:
    """-32000 (CONNECTION_CLOSED), and the message the TypeScript client gives (both
    without resume: with it, tests/sdk/test_resume.py)."""
    with anyio.fail_after(30):
        async with (
            app_process(anyio_backend, 30) as (process, url),
            session_to(url, resume=False) as session,
        ):
            failures: list[MCPError] = []
            async with anyio.create_task_group() as tg:
                sleepy = ("sleepy", {"seconds": 60})
                tg.start_soon(failing_call, failures, session.call_tool, *sleepy)
                await anyio.sleep(0.3)  # sent, its handler running
                process.kill()
    assert [(f.error.code, f.error.message) for f in failures] == [(CONNECTION_CLOSED, LOST)]


async def test_a_cancelled_json_text_stream_leaves_no_route_behind() -> None:
    """A streamed call cancelled over JSON text may get no response at all: its route
    (and the stream it holds) is dropped when the cancel goes out, not kept forever."""
    async with live_server() as (server, probe):
        with anyio.fail_after(30):
            async with (
                mcp_ws.connect(server.url, subprotocols=["mcp"]) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                routes = write._routes  # type: ignore[attr-defined]
                async with mcp_ws.stream_tool(
                    session, "generate", {"count": 100_000, "pause": 0.01}
                ) as stream:
                    async for event in stream:
                        assert len(routes) == 1
                        if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                            break
                with anyio.fail_after(5):
                    await probe.stream_cancelled.wait()
                assert len(routes) == 0
                async with mcp_ws.stream_tool(session, "generate", {"count": 2}) as stream:
                    assert len([e async for e in stream]) == 4  # start, 2 deltas, completed
                assert len(routes) == 0  # answered: gone too
