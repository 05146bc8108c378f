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
