"""Resume over real sockets (docs/protocol.md section 9): links cut through a relay at
random points while calls run; a server restarted between the cut and the resume; the
grace period running out; tokens that must not work."""

from __future__ import annotations

from typing import Any

import anyio
import msgpack
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, CreateMessageResult, TextContent

import mcp_ws
from mcp_ws import LinkState
from mcp_ws.protocol.resume import ResumeHello
from mcp_ws.sdk.handover import HandoverReadStream
from mcp_ws.transport import bearer_token
from mcp_ws.transport.resume import REFUSAL, ResumeLimits
from mcp_ws.transport.websocket import open_websocket

from ..apps import Probe, build_app
from ..cutproxy import cut_proxy
from ..livehelpers import failing_call, mux_of
from .test_handover import Background, free_port, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def sampling(context: Any, params: Any) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant",
        content=TextContent(type="text", text=f"ok-{params.messages[0].content.text}"),
        model="test-model",
    )


def expected_text(tag: str, count: int, ask: bool) -> str:
    parts = []
    for i in range(count):
        if ask and i == count // 2:
            parts.append(f"[ok-{tag}] ")
        parts.append(f"{tag}.{i} ")
    return "".join(parts)


async def test_64_calls_through_random_cuts(anyio_backend: str) -> None:
    """Half the calls stream, some ask the client for a sample; the relay cuts every
    50 to 150 ms, and cuts each connection after a random number of bytes (mid-frame,
    mid-message, during a resume). Nothing is lost, repeated or out of order, and the
    server ran each call once."""
    probe = Probe()
    states: list[LinkState] = []
    async with (
        mcp_ws.serving(build_app(probe), port=0) as server,
        cut_proxy(server.port, seed=3) as proxy,
    ):
        proxy.byte_budget = (300, 300_000)
        async with (
            mcp_ws.connect(proxy.url(), on_link=states.append) as (read, write),
            ClientSession(read, write, sampling_callback=sampling) as session,
        ):
            await session.initialize()
            outcomes: dict[str, str] = {}
            problems: list[str] = []

            async def streamed(tag: str, ask: bool) -> None:
                text = []
                seqs = []
                async with mcp_ws.stream_tool(
                    session, "tagged", {"tag": tag, "count": 30, "pause": 0.01, "ask": ask}
                ) as stream:
                    async for event in stream:
                        if isinstance(event, mcp_ws.Delta):
                            seqs.append(event.seq)
                            text.append(event.text)
                        elif isinstance(event, mcp_ws.Failed):
                            problems.append(f"{tag}: {event.error}")
                final = text_of(stream.result)
                if seqs != list(range(1, len(seqs) + 1)) or "".join(text) != final:
                    problems.append(f"{tag}: deltas {seqs} do not make the result")
                outcomes[tag] = final

            async def plain(tag: str, ask: bool) -> None:
                result: CallToolResult = await session.call_tool(
                    "tagged", {"tag": tag, "count": 30, "pause": 0.01, "ask": ask}
                )
                outcomes[tag] = text_of(result)

            calls = {f"c{i}": (i % 2 == 0, i % 8 < 2) for i in range(64)}
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(proxy.cut_every, 0.05, 0.15, 12)
                    for tag, (stream_it, ask) in calls.items():
                        tg.start_soon(streamed if stream_it else plain, tag, ask)
            assert problems == []
            for tag, (_, ask) in calls.items():
                assert outcomes[tag] == expected_text(tag, 30, ask)
            assert probe.runs == dict.fromkeys(calls, 1)
            assert isinstance(read, HandoverReadStream)
            assert read.handover.connections == 1  # one connection, resumed, never replaced
            mux = mux_of(read)
            assert mux.resumes >= 3
    assert proxy.cuts >= 10
    assert LinkState.LOST not in states
    assert states.count(LinkState.RECOVERED) == mux.resumes


async def test_a_streamed_answer_continues_after_a_cut(anyio_backend: str) -> None:
    probe = Probe()
    states: list[LinkState] = []
    async with (
        mcp_ws.serving(build_app(probe), port=0) as server,
        cut_proxy(server.port) as proxy,
        mcp_ws.connect(proxy.url(), on_link=states.append) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        seqs: list[int] = []
        with anyio.fail_after(30):
            async with mcp_ws.stream_tool(
                session, "tagged", {"tag": "a", "count": 200, "pause": 0.002}
            ) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        seqs.append(event.seq)
                        if event.seq in (20, 120):
                            assert proxy.cut() == 1
        assert seqs == list(range(1, 201))  # Started is seq 0
        assert text_of(stream.result) == expected_text("a", 200, False)
        assert states == [LinkState.RECOVERING, LinkState.RECOVERED] * 2
        assert probe.runs == {"a": 1}


async def test_a_server_restarted_between_cut_and_resume_means_outcome_unknown(
    anyio_backend: str,
) -> None:
    """The resume reaches a new server process: refused, so the call in flight fails
    with OUTCOME_UNKNOWN (never sent again); the session goes on with a new connection
    (initialize replayed) and new calls work."""
    states: list[LinkState] = []
    async with anyio.create_task_group() as tg:
        background = Background(tg, free_port())
        server = await background.start()
        async with cut_proxy(server.port) as proxy:
            async with (
                mcp_ws.connect(proxy.url(), on_link=states.append) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                failures: list[MCPError] = []
                async with anyio.create_task_group() as calls:
                    sleepy = ("sleepy", {"seconds": 30})
                    calls.start_soon(failing_call, failures, session.call_tool, *sleepy)
                    with anyio.fail_after(5):
                        await background.probe.started.wait()
                    proxy.closed = True  # the server is unreachable for a moment
                    proxy.cut()
                    await background.stop()
                    await background.start()  # a new process on the same address
                    proxy.closed = False
                assert [f.error.code for f in failures] == [mcp_ws.OUTCOME_UNKNOWN]
                assert failures[0].error.message.startswith("outcome unknown: resume refused")
                with anyio.fail_after(10):
                    assert text_of(await session.call_tool("client_name", {})) == "mcp"
                assert isinstance(read, HandoverReadStream)
                assert read.handover.connections == 2
        await background.stop()
    assert states[0] is LinkState.RECOVERING
    assert LinkState.LOST in states


async def test_when_the_grace_runs_out_the_server_ends_the_session(anyio_backend: str) -> None:
    probe = Probe()
    async with (
        mcp_ws.serving(build_app(probe), port=0, resume_grace=1) as server,
        cut_proxy(server.port) as proxy,
        mcp_ws.connect(proxy.url()) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        failures: list[MCPError] = []
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                sleepy = ("sleepy", {"seconds": 30})
                tg.start_soon(failing_call, failures, session.call_tool, *sleepy)
                await probe.started.wait()
                proxy.closed = True
                proxy.cut()
                assert server.resume is not None
                await probe.cancelled.wait()  # the grace ran out: its handler was cancelled
            assert [f.error.code for f in failures] == [mcp_ws.OUTCOME_UNKNOWN]
            assert server.resume is not None
            assert server.resume.detached == 0
            proxy.closed = False
            assert text_of(await session.call_tool("add", {"a": 1, "b": 2})) == "3"


async def resume_hello(
    url: str, token: str, headers: dict[str, str], received: int = 0
) -> list[Any]:
    """Ask ``url`` to resume ``token`` with a raw WebSocket; the frames of its answer."""
    ws = await open_websocket(url, subprotocols=["mcp-ws.v1"], headers=headers)
    try:
        hello = [0, 0, 0, {"resume": ResumeHello(token=token, received=received).to_wire()}]
        await ws.send([msgpack.packb(hello)])
        frames: list[Any] = []
        with anyio.fail_after(5):
            while (message := await ws.receive()) is not None:
                unpacker = msgpack.Unpacker(raw=False)
                assert isinstance(message, bytes)
                unpacker.feed(message)
                frames += list(unpacker)
        assert ws.close_code == 1000
        return frames
    finally:
        await ws.aclose()


def refused(frames: list[Any]) -> bool:
    return (
        len(frames) == 2
        and frames[0][3]["resume"] == {"refused": REFUSAL}
        and frames[1][:5] == [6, 0, 0, 0, 0]
    )


async def test_hostile_tokens_are_refused_alike(anyio_backend: str) -> None:
    """Unknown, guessed, another principal's, or already used: the same answer, and the
    real connection is untouched."""
    auth = bearer_token("alice", "bob")
    async with (
        mcp_ws.serving(build_app(), port=0, auth=auth) as server,
        cut_proxy(server.port) as proxy,
        mcp_ws.connect(proxy.url(), token="alice") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        mux = mux_of(read)
        token = mux.core.resume_token
        assert token is not None
        assert len(token) >= 32  # 192 random bits, URL-safe base64
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        assert refused(await resume_hello(server.url, "x" * len(token), alice))
        assert refused(await resume_hello(server.url, token, bob))  # not bob's
        # A position beyond what the server sent: refused, the session stays.
        proxy.closed = True
        proxy.cut()
        with anyio.fail_after(5):
            while not mux.suspended:
                await anyio.sleep(0.01)
        assert server.resume is not None
        for _ in range(100):
            if server.resume.detached:
                break
            await anyio.sleep(0.01)
        assert refused(await resume_hello(server.url, token, alice, 10**9))
        proxy.closed = False
        with anyio.fail_after(10):
            assert text_of(await session.call_tool("add", {"a": 2, "b": 2})) == "4"
        # Once the client has spoken after its resume, the old token is spent.
        assert refused(await resume_hello(server.url, token, alice))
        assert mux.resumes == 1
        assert server.resume.refused == 4


async def test_detached_connections_past_the_limit_are_ended_oldest_first(
    anyio_backend: str,
) -> None:
    limits = ResumeLimits(max_detached=2, max_detached_per_principal=2)
    async with (
        mcp_ws.serving(build_app(), port=0, resume_limits=limits) as server,
        cut_proxy(server.port) as proxy,
    ):
        proxy.closed = True  # every client's resume waits: the server keeps them detached
        opened: list[Any] = []
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                proxy.closed = False
                done = anyio.Event()

                async def client(done: anyio.Event = done) -> None:
                    async with (
                        mcp_ws.connect(proxy.url()) as (read, write),
                        ClientSession(read, write) as session,
                    ):
                        await session.initialize()
                        opened.append(read)
                        done.set()
                        await anyio.sleep_forever()

                tg.start_soon(client)
                with anyio.fail_after(5):
                    await done.wait()
            proxy.closed = True
            proxy.cut()
            assert server.resume is not None
            with anyio.fail_after(10):
                while server.resume.evicted < 1:
                    await anyio.sleep(0.01)
            assert server.resume.detached == 2
            assert server.resume.evicted == 1
            tg.cancel_scope.cancel()


async def test_resume_off_on_either_side(anyio_backend: str) -> None:
    async with (
        mcp_ws.serving(build_app(), port=0, resume_grace=0) as server,
        mcp_ws.connect(server.url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        assert not mux_of(read).core.resumable
    async with (
        mcp_ws.serving(build_app(), port=0) as server,
        mcp_ws.connect(server.url, resume=False) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        assert not mux_of(read).core.resumable
        assert server.resume is not None
        assert server.resume.detached == 0
