"""``mcp-ws serve --workers N``: N processes share one port, a worker that dies is
replaced, and SIGTERM drains them all (calls in flight finish, exit code 0)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession

import mcp_ws
from mcp_ws.sdk.handover import HandoverReadStream

from ..cli.test_cli import running, text_of
from ..cutproxy import cut_proxy
from ..livehelpers import mux_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def whoami(url: str) -> int:
    """The pid of the worker a fresh connection lands on."""
    async with (
        mcp_ws.connect(url, handover=False) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return int(text_of(await session.call_tool("whoami", {})))


async def pids_seen(url: str, want: int, tries: int = 60) -> set[int]:
    """Connect until ``want`` distinct workers answered (or ``tries`` connections)."""
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(await whoami(url))
        if len(seen) >= want:
            break
    return seen


async def test_workers_share_the_port_a_dead_one_is_replaced_and_sigterm_drains(
    anyio_backend: str,
) -> None:
    args = ["serve", "tests.apps:build_app", "--port", "0", "--workers", "2", "--grace", "10"]
    async with running(anyio_backend, *args) as server:
        with anyio.fail_after(30):
            first = await server.line()
        assert first.startswith("mcp-ws: serving tests.apps:build_app at ws://"), first
        assert first.strip().endswith("with 2 workers")
        url = first.split(" at ", 1)[1].split(" with ", 1)[0]
        with anyio.fail_after(30):
            pids = await pids_seen(url, 2)
        assert len(pids) == 2, "the kernel spread connections over both workers"
        assert server.process.pid not in pids

        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        with anyio.fail_after(20):
            line = await server.line()
        assert line.startswith("mcp-ws: worker "), line
        assert f"(pid {victim}) exited with code -9; starting a new one" in line, line
        with anyio.fail_after(30):
            line = await server.line()
        assert " serving again (pid " in line, line
        with anyio.fail_after(30):
            after = await pids_seen(url, 2)
        assert victim not in after
        assert len(after) == 2  # a new worker took its place

        async with (
            mcp_ws.connect(url, handover=False) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await session.list_tools()
            results: list[str] = []
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    results.append(text_of(await session.call_tool("sleepy", {"seconds": 1})))

                tg.start_soon(slow)
                await anyio.sleep(0.3)
                server.process.send_signal(signal.SIGTERM)
            assert results == ["rested"]  # finished while its worker drained
        with anyio.fail_after(30):
            code = await server.process.wait()
        rest = await server.rest()
        assert code == 0, rest
        assert "draining 2 workers" in rest
        assert rest.strip().endswith("mcp-ws: stopped")


async def test_workers_must_be_at_least_one(anyio_backend: str) -> None:
    async with running(anyio_backend, "serve", "tests.apps:build_app", "--workers", "0") as s:
        with anyio.fail_after(30):
            code = await s.process.wait()
        assert code == 2


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for whoever adopted it to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_workers_do_not_outlive_a_killed_supervisor(anyio_backend: str) -> None:
    """SIGKILL leaves the supervisor no time to stop its workers: they notice it is gone
    and drain and exit by themselves, instead of serving on the port, orphaned."""
    args = ["serve", "tests.apps:build_app", "--port", "0", "--workers", "2", "--grace", "1"]
    async with running(anyio_backend, *args) as server:
        with anyio.fail_after(30):
            first = await server.line()
        url = first.split(" at ", 1)[1].split(" with ", 1)[0]
        with anyio.fail_after(30):
            pids = await pids_seen(url, 2)
        assert len(pids) == 2
        server.process.kill()
        with anyio.fail_after(20):
            while any(_alive(pid) for pid in pids):
                await anyio.sleep(0.1)
        with pytest.raises(OSError):  # nobody listens on the port any more
            await anyio.connect_tcp("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0]))


async def test_a_resume_reaches_the_worker_that_holds_its_connection(anyio_backend: str) -> None:
    """With two workers the kernel sends about half the resumes to the other worker,
    which passes them to the right one (mcp_ws/transport/siblings.py): every cut is
    resumed, no call fails, and the calls' worker is the one the connection began on."""
    args = ["serve", "tests.apps:build_app", "--port", "0", "--workers", "2"]
    async with running(anyio_backend, *args) as server:
        with anyio.fail_after(30):
            first = await server.line()
        url = first.split(" at ", 1)[1].split(" with ", 1)[0]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        async with (
            cut_proxy(port, seed=5) as proxy,
            mcp_ws.connect(proxy.url()) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            mux = mux_of(read)
            assert mux.core.resume_worker in {"1", "2"}
            home = int(text_of(await session.call_tool("whoami", {})))
            with anyio.fail_after(30):
                for _ in range(12):
                    assert proxy.cut() == 1
                    assert int(text_of(await session.call_tool("whoami", {}))) == home
            assert mux.resumes == 12
            assert isinstance(read, HandoverReadStream)
            assert read.handover.connections == 1
        # The kernel spread the 13 connections over both workers: some were passed on.
        assert proxy.accepted == 13
