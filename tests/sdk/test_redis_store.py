"""The Redis call store (mcp_ws/sdk/redis_store.py) against a real redis-server started
here: two servers sharing it (a call on one, read again on the other), a producing
server killed mid-answer (outcome unknown within the lease), a cancel through another
replica, retention, the per-call budget, and every documented error. The store needs
asyncio (redis-py's async client); on trio it says so."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

import mcp_ws
from mcp_ws.sdk.redis_store import RedisStore
from mcp_ws.transport import bearer_token

from ..apps import Probe, build_app
from .test_attach import client, deltas, failure_of
from .test_streaming import collect, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[2]
ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py's client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of its own on loopback, in a temporary folder, no persistence."""
    assert Path(REDIS).exists(), "redis-server is not installed: apt-get install redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mcp-ws-redis-") as folder:
        server = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                folder,
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                        probe.sendall(b"PING\r\n")
                        if probe.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(10)


@asynccontextmanager
async def replica(
    url: str, probe: Probe | None = None, **options: Any
) -> AsyncIterator[mcp_ws.McpWsServer]:
    """The test app served with a `RedisStore` of its own on ``url``."""
    lease = options.pop("lease", 1.0)
    retain = options.pop("retain", 30.0)
    store = RedisStore(url, lease=lease, retain=retain, poll=0.2, **options.pop("store", {}))
    app = build_app(probe or Probe())
    async with mcp_ws.serving(app, port=0, store=store, resume_grace=2, **options) as server:
        yield server


@ASYNCIO
async def test_a_call_on_one_replica_is_read_on_another(anyio_backend: str, redis_url: str) -> None:
    probe = Probe()
    async with replica(redis_url, probe) as a, replica(redis_url) as b:
        async with client(a.url) as on_a, client(b.url) as on_b:
            arguments = {"count": 40, "pause": 0.01}
            async with mcp_ws.stream_tool(on_a, "generate", arguments) as stream:
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                assert first.handle is not None
                async with mcp_ws.attach(on_b, first.handle, after=0) as attached:
                    events = await collect(attached)
                rest = await collect(stream)
            assert attached.direct
            assert events[0] == mcp_ws.Started(handle=first.handle)
            assert [d.seq for d in deltas(events)] == list(range(1, 41))
            assert isinstance(events[-1], mcp_ws.Completed)
            assert events[-1].result == stream.result
            assert text_of(events[-1].result) == "".join(f"t{i} " for i in range(40))
            assert isinstance(rest[-1], mcp_ws.Completed)
            # after the end, from the other replica, whole
            async with mcp_ws.attach(on_b, first.handle) as again:
                assert [d.seq for d in deltas(await collect(again))] == list(range(1, 41))


@ASYNCIO
async def test_errors_principals_and_retention(anyio_backend: str, redis_url: str) -> None:
    auth = bearer_token("alice-token", "bob-token")
    async with replica(redis_url, auth=auth, retain=1.0) as a, replica(redis_url, auth=auth) as b:
        async with client(a.url, "alice-token") as alice:
            async with mcp_ws.stream_tool(alice, "generate", {"count": 3}) as stream:
                await collect(stream)
            handle = stream.handle
            assert handle is not None
        async with client(b.url, "alice-token") as alice_b, client(b.url, "bob-token") as bob:
            assert (await failure_of(bob, handle)).error.code == mcp_ws.UNKNOWN_HANDLE
            assert (await failure_of(alice_b, "x" * 32)).error.code == mcp_ws.UNKNOWN_HANDLE
            assert (await failure_of(alice_b, 12345)).error.code == mcp_ws.UNKNOWN_HANDLE
            assert (await failure_of(alice_b, handle, -1)).error.code == -32602
            async with mcp_ws.attach(alice_b, handle, after=1) as fine:
                assert [d.seq for d in deltas(await collect(fine))] == [2, 3]
            await anyio.sleep(1.2)  # past the retention
            assert (await failure_of(alice_b, handle)).error.code == mcp_ws.UNKNOWN_HANDLE


@ASYNCIO
async def test_a_reader_on_another_replica_cancels_the_call(
    anyio_backend: str, redis_url: str
) -> None:
    probe = Probe()
    async with replica(redis_url, probe) as a, replica(redis_url) as b:
        async with client(a.url) as on_a, client(b.url) as on_b:
            arguments = {"count": 100_000, "pause": 0.01}
            async with mcp_ws.stream_tool(on_a, "generate", arguments) as stream:
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                assert first.handle is not None
                async with mcp_ws.attach(on_b, first.handle, after=2) as reader:
                    events: list[mcp_ws.StreamEvent] = []
                    async for event in reader:
                        events.append(event)
                        if len(events) == 2:
                            reader.cancel()
                rest = await collect(stream)
    outcome = events[-1]
    assert isinstance(outcome, mcp_ws.Failed)
    assert isinstance(outcome.error, MCPError)
    assert outcome.error.error.code == -32003
    assert isinstance(rest[-1], mcp_ws.Failed)
    assert probe.stream_cancelled.is_set()


@ASYNCIO
async def test_a_killed_producer_is_outcome_unknown_within_its_lease(
    anyio_backend: str, redis_url: str
) -> None:
    """``mcp-ws serve --store`` in a process of its own, SIGKILLed mid-answer: a reader
    on another replica gets -32004 within the lease (5 s) and a poll, never a hang."""
    command = [sys.executable, "-m", "mcp_ws", "serve", "tests.apps:build_app", "--port", "0"]
    process = await anyio.open_process([*command, "--store", redis_url], cwd=ROOT)
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = (await process.stdout.receive()).decode()
        url = line.split(" at ", 1)[1].split()[0]
        async with replica(redis_url) as b, client(url) as on_a, client(b.url) as on_b:
            arguments = {"count": 100_000, "pause": 0.01}
            async with mcp_ws.stream_tool(on_a, "generate", arguments) as stream:
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                assert first.handle is not None
                async with mcp_ws.attach(on_b, first.handle, after=0) as reader:
                    seen = 0
                    async for event in reader:
                        if isinstance(event, mcp_ws.Delta):
                            seen += 1
                            if seen == 5:
                                process.kill()
                                killed = anyio.current_time()
                        elif isinstance(event, mcp_ws.Failed):
                            waited = anyio.current_time() - killed
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()
    assert isinstance(reader.outcome, mcp_ws.Failed)
    error = reader.outcome.error
    assert isinstance(error, MCPError)
    assert error.error.code == mcp_ws.OUTCOME_UNKNOWN
    assert error.error.message.startswith("outcome unknown")
    assert waited <= 5 + 1.5


@ASYNCIO
async def test_with_no_reader_the_producer_waits_at_the_per_call_budget(
    anyio_backend: str, redis_url: str
) -> None:
    probe = Probe()
    store = {"max_call_bytes": 20_000}
    async with replica(redis_url, probe, store=store) as a, client(a.url) as session:
        arguments = {"count": 100_000, "pause": 0.0}
        async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
            first = await stream.__anext__()
            assert isinstance(first, mcp_ws.Started)
            await anyio.sleep(0.5)  # nothing read: one window's worth, then it waits
            held = probe.sent
            await anyio.sleep(0.5)
            assert probe.sent == held < 100_000
            read = 0
            async for event in stream:
                read += isinstance(event, mcp_ws.Delta)
                if read == 3000:
                    break
            assert probe.sent > held  # reading let it go on


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_store_says_it_needs_asyncio(anyio_backend: str) -> None:
    with pytest.raises(mcp_ws.StoreUnavailable, match="needs asyncio"):
        async with RedisStore("redis://127.0.0.1:1/0"):
            pass


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_serve_store_on_trio_is_refused(anyio_backend: str) -> None:
    command = [sys.executable, "-m", "mcp_ws", "--backend", "trio", "serve"]
    done = await anyio.run_process(
        [*command, "tests.apps:build_app", "--store", "redis://127.0.0.1:1/0"],
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2
    assert b"needs asyncio" in done.stderr


def test_a_lease_is_more_than_0_and_at_most_15_s() -> None:
    with pytest.raises(ValueError, match="lease"):
        RedisStore("redis://127.0.0.1:1/0", lease=30)
    with pytest.raises(ValueError, match="lease"):
        RedisStore("redis://127.0.0.1:1/0", lease=0)


@ASYNCIO
async def test_events_trimmed_past_the_budget_are_gone_with_the_earliest_seq(
    anyio_backend: str, redis_url: str
) -> None:
    """The caller reads as it goes, so the producer trims past ``max_call_bytes``: a
    read from the start gets -32006 with the earliest seq kept, and a read from there
    gets the rest, on another replica."""
    store = {"max_call_bytes": 4000}
    async with replica(redis_url, store=store) as a, replica(redis_url) as b:
        async with client(a.url) as on_a, client(b.url) as on_b:
            async with mcp_ws.stream_tool(on_a, "bulk", {"chunks": 200, "size": 100}) as stream:
                await collect(stream)
            handle = stream.handle
            assert handle is not None
            gone = await failure_of(on_b, handle, 0)
            assert gone.error.code == mcp_ws.EVENTS_GONE
            earliest = gone.error.data["earliestSeq"]
            assert 150 < earliest <= 200  # about 4000 bytes of ~110-byte events kept
            async with mcp_ws.attach(on_b, handle, after=earliest - 1) as kept:
                events = await collect(kept)
            assert [d.seq for d in deltas(events)] == list(range(earliest, 201))
            assert isinstance(events[-1], mcp_ws.Completed)
