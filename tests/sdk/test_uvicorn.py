"""``mcp_ws.asgi`` behind a real uvicorn on loopback.

uvicorn runs only on asyncio, so it runs in a thread of its own; the clients run on
both backends.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp_types import TextContent

import mcp_ws
from mcp_ws.transport.resume import ResumeLimits

from ..apps import Probe, build_app
from ..cutproxy import cut_proxy
from ..livehelpers import mux_of, uvicorn_thread

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def uvicorn_url() -> Iterator[str]:
    """The test app at ``/mcp`` of a uvicorn server in a background thread."""
    with uvicorn_thread(mcp_ws.asgi(build_app(Probe()), path="/mcp")) as base:
        yield base.replace("http://", "ws://") + "/mcp"


async def test_a_session_through_uvicorn(uvicorn_url: str) -> None:
    with anyio.fail_after(20):
        async with (
            mcp_ws.connect(uvicorn_url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", "add", "progress"} <= names
            seen: list[float] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                seen.append(progress)

            result = await session.call_tool(
                "progress", {"steps": 5}, progress_callback=on_progress
            )
            assert seen == [1, 2, 3, 4, 5]
            assert not result.is_error
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(session.call_tool, "echo", {"text": f"call {i}"})
            echoed = await session.call_tool("echo", {"text": "still here"})
            block = echoed.content[0]
            assert isinstance(block, TextContent)
            assert block.text == "still here"


async def test_uvicorn_refusals_are_http_answers(uvicorn_url: str) -> None:
    with anyio.fail_after(20):
        with pytest.raises(mcp_ws.HandshakeError) as refused:
            async with mcp_ws.connect(uvicorn_url, headers={"Origin": "https://evil.example"}):
                pass  # pragma: no cover
        assert refused.value.status == 403
        with pytest.raises(mcp_ws.HandshakeError) as missing:
            async with mcp_ws.connect(uvicorn_url.replace("/mcp", "/elsewhere")):
                pass  # pragma: no cover
        assert missing.value.status == 404


async def test_a_dropped_link_is_resumed_through_uvicorn(uvicorn_url: str) -> None:
    """``mcp_ws.asgi`` offers resume as ``serving`` does: a stream cut twice through a
    relay goes on with every delta once and in order, on one connection."""
    port = int(uvicorn_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    with anyio.fail_after(30):
        async with (
            cut_proxy(port) as proxy,
            mcp_ws.connect(proxy.url()) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            seqs: list[int] = []
            args = {"tag": "u", "count": 150, "pause": 0.002}
            async with mcp_ws.stream_tool(session, "tagged", args) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        seqs.append(event.seq)
                        if event.seq in (20, 90):
                            assert proxy.cut() == 1
            assert seqs == list(range(1, 151))
            block = stream.result.content[0]
            assert isinstance(block, TextContent)
            assert block.text == "".join(f"u.{i} " for i in range(150))
            assert mux_of(read).resumes == 2


async def test_a_call_whose_client_vanished_runs_on_under_uvicorns_lifespan() -> None:
    """uvicorn runs the endpoint's lifespan: a streamed call whose client vanished (its
    session ended at once: no detached connections kept) runs on, a new client reads
    it to its end, and uvicorn stops cleanly afterwards."""
    probe = Probe()
    app = mcp_ws.asgi(build_app(probe), path="/mcp", resume_limits=ResumeLimits(max_detached=0))
    with uvicorn_thread(app) as base:
        url = base.replace("http://", "ws://") + "/mcp"
        port = int(base.rsplit(":", 1)[1])
        with anyio.fail_after(30):
            async with (
                cut_proxy(port) as proxy,
                mcp_ws.connect(proxy.url(), resume=False) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                arguments = {"count": 40, "pause": 0.01}
                async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
                    async for event in stream:
                        if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                            proxy.cut()  # no cancel reaches the server
                            break
            assert stream.handle is not None
            async with (
                mcp_ws.connect(url) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                async with mcp_ws.attach(session, stream.handle, after=3) as again:
                    events = [event async for event in again]
    assert [e.seq for e in events if isinstance(e, mcp_ws.Delta)] == list(range(4, 41))
    assert isinstance(events[-1], mcp_ws.Completed)
    assert not probe.stream_cancelled.is_set()
