"""A draining server says so: the health path answers 200 while serving and 503 while
draining, new upgrades are refused with 503, calls in flight finish, then it stops."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from mcp.client.session import ClientSession

import mcp_ws
from mcp_ws.sdk.server import McpWsServer

from ..apps import Probe, build_app
from ..sdk.test_handover import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def http_get(server: McpWsServer, path: str) -> tuple[int, bytes]:
    """A plain HTTP/1.1 GET on the server's port: (status, body)."""
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    async with stream:
        await stream.send(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        with anyio.fail_after(5):
            while True:
                try:
                    data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_the_health_path_says_ok_while_serving() -> None:
    async with mcp_ws.serving(build_app(), port=0) as server:
        assert await http_get(server, "/healthz") == (200, b"ok\n")
        assert await http_get(server, "/healthz?probe=1") == (200, b"ok\n")
        status, _ = await http_get(server, "/elsewhere")
        assert status != 200


async def test_the_health_path_can_move_or_be_turned_off() -> None:
    async with mcp_ws.serving(build_app(), port=0, health_path="/live") as server:
        assert await http_get(server, "/live") == (200, b"ok\n")
        assert (await http_get(server, "/healthz"))[0] != 200
    async with mcp_ws.serving(build_app(), port=0, health_path=None) as server:
        assert (await http_get(server, "/healthz"))[0] != 200


async def test_a_draining_server_says_503_refuses_upgrades_and_lets_calls_finish() -> None:
    probe = Probe()
    async with anyio.create_task_group() as tg:
        stop = anyio.Event()
        ready: list[McpWsServer] = []
        stopped = anyio.Event()

        async def serve() -> None:
            async with mcp_ws.serving(build_app(probe), port=0, shutdown_grace=10) as server:
                ready.append(server)
                await stop.wait()
            stopped.set()

        tg.start_soon(serve)
        with anyio.fail_after(5):
            while not ready:
                await anyio.sleep(0.01)
        server = ready[0]
        async with (
            mcp_ws.connect(server.url, handover=False) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            # The SDK lists the tools after a first call (to check its output): done now,
            # as this client keeps to its one connection, which is about to go away.
            await s.list_tools()
            results: list[str] = []

            async def slow_call() -> None:
                results.append(text_of(await s.call_tool("sleepy", {"seconds": 1.0})))

            tg.start_soon(slow_call)
            with anyio.fail_after(5):
                await probe.started.wait()
            stop.set()  # leaving the block drains
            with anyio.fail_after(5):
                while not server.draining:
                    await anyio.sleep(0.01)
            assert await http_get(server, "/healthz") == (503, b"draining\n")
            with pytest.raises(mcp_ws.HandshakeError) as refused:
                async with mcp_ws.connect(server.url):
                    pass
            assert refused.value.status == 503
            with anyio.fail_after(10):
                await stopped.wait()
            assert results == ["rested"]  # the call in flight finished
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", server.port)  # and then it stopped
