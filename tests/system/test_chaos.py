"""Chaos: killed processes, half-open and silent peers, mutated frames. Every case is
bounded in count and time, runs on loopback only, and on asyncio and trio.

What must hold: every call ends with exactly one outcome, a failing peer costs nothing
beyond its own connection (the server's descriptors, tasks and sessions come back to
their baseline, fresh clients are served), and nothing is logged as a crash.
"""

from __future__ import annotations

import random
import signal
import sys
from contextlib import AsyncExitStack, suppress

import anyio
import anyio.abc
import msgpack
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

import mcp_ws
from mcp_ws.protocol import Flag
from mcp_ws.protocol.frames import Cancel, Credit, Data, GoAway, Hello, Open, Ping, encode_frame
from mcp_ws.protocol.message import encode_payload
from mcp_ws.transport import open_websocket

from ..livehelpers import ROOT, AppProcess, served_app, session_to

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


async def assert_recovered(app: AppProcess, baseline: dict[str, int]) -> None:
    """The server's descriptors, tasks and connections are back to ``baseline``, and
    nothing was logged as a crash."""
    assert await back_to_baseline(app, baseline) == baseline
    assert_no_traceback(app)


@pytest.mark.timeout(90)
async def test_clients_killed_mid_stream_cost_the_server_nothing(anyio_backend: str) -> None:
    """Three client processes killed with SIGKILL: one whose 100 streams stalled (their
    producers blocked on credit), two reading 10 streams each as fast as they come. Their
    sessions wait 1 s for a resume (docs/protocol.md section 9), then are gone."""
    async with served_app(anyio_backend, 80, resume_grace=1) as app:
        baseline = await app.stats()
        peers = [
            await start_peer("stall", app.url, "100", anyio_backend),
            await start_peer("stream", app.url, "10", anyio_backend),
            await start_peer("stream", app.url, "10", anyio_backend),
        ]
        try:
            for peer in peers:
                await wait_for_line(peer, b"ready", 40)
        finally:
            for peer in peers:
                peer.kill()  # SIGKILL: the kernel resets the connections
            with anyio.CancelScope(shield=True):
                for peer in peers:
                    await peer.aclose()
        killed = anyio.current_time()
        with anyio.fail_after(1):  # a fresh client is served at once
            async with session_to(app.url) as session:
                result = await session.call_tool("add", {"a": 20, "b": 22})
        assert result.structured_content == {"result": 42}
        assert anyio.current_time() - killed < 1
        # every handler ended (as a cancellation), the connections and their tasks are gone
        await assert_recovered(app, baseline)


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
        # Without resume: with it, a client waits for the server's grace period
        # (tests/sdk/test_resume.py and tests/cli/test_cli.py).
        async with (
            mcp_ws.connect(url, resume=False) as (read, write),
            ClientSession(read, write) as session,
        ):
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


@pytest.mark.timeout(60)
async def test_half_open_handshakes_and_silent_connections_are_dropped_in_time(
    anyio_backend: str,
) -> None:
    """With 2 s handshake and HELLO timeouts: 20 TCP connections that say nothing, 20
    that send half an HTTP request and 20 WebSockets that never send HELLO are all
    dropped after about 2 s, while a well-behaved client is served throughout."""
    async with served_app(anyio_backend, 50, timeouts=2.0) as app:
        baseline = await app.stats()
        host, port = app.url.removeprefix("ws://").split("/")[0].rsplit(":", 1)
        async with AsyncExitStack() as stack:
            silent = [
                await stack.enter_async_context(await anyio.connect_tcp(host, int(port)))
                for _ in range(20)
            ]
            half = [
                await stack.enter_async_context(await anyio.connect_tcp(host, int(port)))
                for _ in range(20)
            ]
            for stream in half:
                await stream.send(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            mute = []
            for _ in range(20):
                ws = await open_websocket(app.url, subprotocols=["mcp-ws.v1"], max_size=None)
                stack.push_async_callback(ws.aclose)
                mute.append(ws)
            opened = anyio.current_time()
            stats = await app.stats()  # served while 60 bad connections hang on
            assert stats["connections"] == baseline["connections"] + 60
            with anyio.fail_after(8):
                for stream in silent + half:
                    assert await receive_until_eof(stream) in (b"", b"HTTP/1.1 408")
                for ws in mute:
                    while await ws.receive() is not None:
                        pass
                    assert ws.close_code == 1008  # GOAWAY(TIMEOUT), then close
            assert anyio.current_time() - opened >= 1.8  # not before the timeout
        await assert_recovered(app, baseline)


async def receive_until_eof(stream: anyio.abc.ByteStream) -> bytes:
    """Read until the server closes the connection; the first 12 bytes it sent."""
    seen = b""
    try:
        while True:
            seen += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return seen[:12]


@pytest.mark.timeout(60)
async def test_a_client_that_goes_silent_is_dropped_by_keepalive(anyio_backend: str) -> None:
    """A client process stopped with SIGSTOP holds its connection open but answers
    nothing: the server (ping every 0.5 s) drops its link within 2 x 0.5 + 5 s, and its
    session after the 1 s it waits for a resume."""
    async with served_app(anyio_backend, 50, ping_interval=0.5, resume_grace=1) as app:
        baseline = await app.stats()
        peer = await start_peer("idle", app.url, "0", anyio_backend)
        try:
            await wait_for_line(peer, b"ready", 20)
            assert (await app.stats())["connections"] == baseline["connections"] + 1
            peer.send_signal(signal.SIGSTOP)
            stopped = anyio.current_time()
            with anyio.fail_after(DEAD_PEER_DEADLINE + 1 + 2):
                while (await app.stats())["connections"] > baseline["connections"]:
                    await anyio.sleep(0.1)
            assert anyio.current_time() - stopped >= 2 * 0.5  # not before two intervals
        finally:
            peer.kill()
            with anyio.CancelScope(shield=True):
                await peer.aclose()
        await assert_recovered(app, baseline)


@pytest.mark.timeout(60)
async def test_a_server_that_goes_silent_fails_the_client_calls_by_keepalive(
    anyio_backend: str,
) -> None:
    """The server process stopped with SIGSTOP mid-call: the client (ping every 0.5 s)
    fails the call with CONNECTION_CLOSED within 2 x 0.5 + 5 s (without resume: with it,
    the client would try to resume for the server's grace period)."""
    async with served_app(anyio_backend, 50) as app:
        settings = mcp_ws.Settings(ping_interval=0.5)
        async with mcp_ws.connect(app.url, settings=settings, resume=False) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                app.process.send_signal(signal.SIGSTOP)
                stopped = anyio.current_time()
                try:
                    with (
                        anyio.fail_after(DEAD_PEER_DEADLINE + 2),
                        pytest.raises(MCPError) as caught,
                    ):
                        await session.call_tool("echo", {"text": "anyone there?"})
                finally:
                    app.process.send_signal(signal.SIGCONT)
                assert caught.value.error.code == CONNECTION_CLOSED
                assert anyio.current_time() - stopped >= 2 * 0.5 + 5 - 0.6


DEAD_PEER_DEADLINE = 2 * 0.5 + 5  # docs/protocol.md section 8, with a 0.5 s interval


def fuzzed_messages(rng: random.Random) -> list[bytes]:
    """One connection's worth of WebSocket messages: a HELLO (itself mutated now and
    then), then valid frames, mutated frames and random MessagePack arrays."""
    sid = rng.choice([1, 3, 5, 2, 0, 2**31 - 1, 2**31, -1])
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}
    valid = [
        encode_frame(Open(stream_id=1, flags=Flag.END, payload=encode_payload(call))),
        encode_frame(Data(stream_id=1, flags=Flag.MORE, payload=b"\x81\xa1x\xc4\x03abc")),
        encode_frame(Cancel(stream_id=1, error_code=rng.randrange(20), reason="fuzz")),
        encode_frame(Credit(stream_id=rng.choice([0, 1]), increment=rng.randrange(1, 2**31))),
        encode_frame(Ping(opaque=rng.randrange(2**64))),
        encode_frame(GoAway(last_stream_id=0, error_code=rng.randrange(12), reason="é" * 300)),
        msgpack.packb([rng.randrange(-2, 10), sid, rng.randrange(300), *rng.sample(ODD_FIELDS, 2)]),
    ]
    hello = encode_frame(Hello(settings={"version": 1}))
    messages = [mutate(rng, hello) if rng.random() < 0.1 else hello]
    for _ in range(rng.randrange(1, 6)):
        frame = rng.choice(valid)
        messages.append(mutate(rng, frame) if rng.random() < 0.7 else frame)
    return messages


ODD_FIELDS: list[object] = [
    b"\x00" * 70_000,
    "x" * 300,
    {"k": [1, 2]},
    [[[[[]]]]],
    None,
    True,
    2**64 - 1,
    -(2**63),
    1.5,
    msgpack.ExtType(1, b"ext"),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, cut, duplicate or splice bytes of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(4)
        if kind == 0 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            del out[rng.randrange(len(out)) :]
        elif kind == 2:
            out += out[: rng.randrange(len(out) + 1)]
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return bytes(out)


@pytest.mark.timeout(60)
async def test_a_fuzzing_client_never_disturbs_a_well_behaved_one(anyio_backend: str) -> None:
    """For 5 s (at most 400 connections), a client sends mutated frames on connection
    after connection while another calls a tool in a loop: every call succeeds, every
    fuzzed connection ends with a close, and the server logs no traceback."""
    rng = random.Random(20261201)
    calls = 0
    fuzzed = 0
    stop = anyio.Event()

    async def fuzz(url: str) -> None:
        nonlocal fuzzed
        with anyio.move_on_after(5):
            while fuzzed < 400:
                ws = await open_websocket(url, subprotocols=["mcp-ws.v1"], max_size=None)
                try:
                    with suppress(anyio.BrokenResourceError):
                        for message in fuzzed_messages(rng):
                            await ws.send([message])
                    with anyio.move_on_after(0.2):  # read what the server says, briefly
                        while await ws.receive() is not None:
                            pass
                finally:
                    await ws.aclose()
                fuzzed += 1
        stop.set()

    async def behave(url: str) -> None:
        nonlocal calls
        async with session_to(url) as session:
            while not stop.is_set():
                result = await session.call_tool("echo", {"text": f"call {calls}"})
                assert result.structured_content == {"result": f"call {calls}"}
                calls += 1

    async with served_app(anyio_backend, 50) as app:
        baseline = await app.stats()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(fuzz, app.url)
                tg.start_soon(behave, app.url)
        assert fuzzed >= 20
        assert calls >= 20
        await assert_recovered(app, baseline)
