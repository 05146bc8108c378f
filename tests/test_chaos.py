"""Chaos: killed processes, half-open and silent peers, mutated frames. Every case is
bounded in count and time, runs on loopback only, and on asyncio and trio.

What must hold: every call ends with exactly one outcome, a failing peer costs nothing
beyond its own connection (the server's descriptors, tasks and sessions come back to
their baseline, fresh clients are served), and nothing is logged as a crash.
"""

from __future__ import annotations

import sys

import anyio
import anyio.abc
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

import mcp_ws

from .livehelpers import ROOT, AppProcess, served_app, session_to

pytestmark = pytest.mark.anyio


async def start_peer(*args: str) -> anyio.abc.Process:
    """``python -m tests.peers ARGS`` in a process of its own."""
    return await anyio.open_process([sys.executable, "-m", "tests.peers", *args], cwd=ROOT)


async def wait_for_line(process: anyio.abc.Process, expected: bytes, seconds: float) -> None:
    assert process.stdout is not None
    seen = b""
    with anyio.fail_after(seconds):
        while expected not in seen:
            seen += await process.stdout.receive()


async def back_to_baseline(app: AppProcess, baseline: dict[str, int]) -> dict[str, int]:
    """Poll the server's stats (from a fresh client each time) until they are back to
    ``baseline``, for 10 s at most; returns the last reading."""
    stats = await app.stats()
    with anyio.move_on_after(10):
        while stats != baseline:
            await anyio.sleep(0.1)
            stats = await app.stats()
    return stats


def assert_no_traceback(app: AppProcess) -> None:
    log = app.log.decode(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.mark.timeout(90)
async def test_a_client_killed_with_100_stalled_streams_costs_the_server_nothing(
    anyio_backend: str,
) -> None:
    async with served_app(anyio_backend, 80) as app:
        baseline = await app.stats()
        peer = await start_peer("stall", app.url, "100", anyio_backend)
        try:
            await wait_for_line(peer, b"ready", 40)  # 100 producers blocked on credit
        finally:
            peer.kill()  # SIGKILL: the kernel resets the connection
            with anyio.CancelScope(shield=True):
                await peer.aclose()
        killed = anyio.current_time()
        with anyio.fail_after(1):  # a fresh client is served at once
            async with session_to(app.url) as session:
                result = await session.call_tool("add", {"a": 20, "b": 22})
        assert result.structured_content == {"result": 42}
        served_after = anyio.current_time() - killed
        assert served_after < 1
        # every handler ended (as a cancellation), the connection and its tasks are gone
        assert await back_to_baseline(app, baseline) == baseline
        assert_no_traceback(app)


@pytest.mark.timeout(90)
async def test_a_server_killed_mid_flight_ends_every_call_once_within_5_s(
    anyio_backend: str,
) -> None:
    """200 calls on 4 connections, 50 of them streaming; the server allows 20 streams per
    connection, so 30 calls a connection wait locally. SIGKILL: each call ends once,
    with the documented CONNECTION_CLOSED, queued or sent, plain or streaming."""
    outcomes: dict[tuple[int, int], list[object]] = {}
    launched = 0
    all_launched = anyio.Event()

    async def plain(session: ClientSession, key: tuple[int, int]) -> None:
        try:
            await session.call_tool("sleepy", {"seconds": 60})
            outcomes[key].append("completed")
        except MCPError as exc:
            outcomes[key].append(exc.error.code)

    async def streaming(session: ClientSession, key: tuple[int, int]) -> None:
        async with mcp_ws.stream_tool(
            session, "generate", {"count": 100_000, "pause": 0.01}
        ) as stream:
            async for event in stream:
                if isinstance(event, mcp_ws.Failed) and isinstance(event.error, MCPError):
                    outcomes[key].append(event.error.error.code)
                elif isinstance(event, mcp_ws.Completed | mcp_ws.Failed):
                    outcomes[key].append(event)

    async def connection(url: str, index: int) -> None:
        nonlocal launched
        async with mcp_ws.connect(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            async with anyio.create_task_group() as calls:
                for j in range(50):
                    key = (index, j)
                    outcomes[key] = []
                    streams = 13 if index < 2 else 12  # 50 streaming calls in all
                    calls.start_soon(streaming if j < streams else plain, session, key)
                    launched += 1
                if launched == 200:
                    all_launched.set()

    async with served_app(anyio_backend, 80, max_streams=20) as app:
        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(connection, app.url, index)
            with anyio.fail_after(20):
                await all_launched.wait()
            await anyio.sleep(1)  # every call sent or queued, the streams flowing
            app.process.kill()
            with anyio.fail_after(5):  # every call has its outcome within 5 s
                while sum(len(o) for o in outcomes.values()) < 200:
                    await anyio.sleep(0.01)
    assert len(outcomes) == 200
    assert all(o == [CONNECTION_CLOSED] for o in outcomes.values()), outcomes
