"""Three backends behind real nginx (no affinity) sharing one real Redis
(``mcp-ws serve --store redis://``): a client process SIGKILLed mid-answer and a new
client process that reads the answer on through nginx, on whichever backend it lands;
a backend SIGKILLed mid-answer, and a reader on another backend told the outcome is
unknown within the producer's lease; a client whose resume lands on another replica
(no affinity), which reads its answers on from Redis."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

import mcp_ws

from ..cutproxy import cut_proxy
from ..sdk.test_attach import client, deltas
from ..sdk.test_redis_store import redis_url  # noqa: F401 - the fixture
from ..sdk.test_streaming import collect
from .test_nginx import ROOT, deployment

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

TOKENS = "".join(f"t{i} " for i in range(150))


async def run_cli(*args: str) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [sys.executable, "-m", "mcp_ws", *args], cwd=ROOT, check=False
        )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_killed_client_process_and_a_new_one_through_nginx(
    anyio_backend: str,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    store = ("--store", redis_url, "--resume-grace", "10")
    async with deployment(tmp_path, extra=store) as (url, _):
        command = [sys.executable, "-m", "mcp_ws", "call", url, "generate"]
        call = await anyio.open_process([*command, "count=150", "pause=0.01"], cwd=ROOT)
        try:
            assert call.stderr is not None
            assert call.stdout is not None
            hint = b""
            with anyio.fail_after(30):
                while b"\n" not in hint:
                    hint += await call.stderr.receive()
                handle = hint.decode().splitlines()[0].rsplit(" ", 1)[-1]
                shown = ""
                while shown.count(" ") < 20:
                    shown += (await call.stdout.receive()).decode()
        finally:
            call.kill()  # SIGKILL: no cancel reaches the server
            with anyio.CancelScope(shield=True):
                await call.aclose()
        seen = shown[: shown.rindex(" ") + 1]
        after = seen.count(" ")
        # two new client processes, each on the backend nginx picks for it: every one
        # reads the rest, every token once
        for _ in range(2):
            code, out, err = await run_cli("attach", url, handle, "--after", str(after))
            assert code == 0, err
            assert seen + out.rstrip("\n") == TOKENS


async def test_a_backend_killed_mid_answer_is_outcome_unknown_within_its_lease(
    anyio_backend: str,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    store = ("--store", redis_url)
    async with deployment(tmp_path, extra=store) as (url, backends):
        async with client(url) as session:
            pid = int((await session.call_tool("whoami", {})).content[0].text)  # type: ignore[union-attr]
            (producer,) = [b for b in backends if b.process and b.process.pid == pid]
            other = next(b for b in backends if b is not producer)
            arguments = {"count": 100_000, "pause": 0.01}
            async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                assert first.handle is not None
                async with client(f"ws://127.0.0.1:{other.port}/mcp") as reader_session:
                    async with mcp_ws.attach(reader_session, first.handle, after=0) as reader:
                        async for event in reader:
                            if isinstance(event, mcp_ws.Delta) and event.seq == 5:
                                await producer.kill()
                                killed = anyio.current_time()
                    waited = anyio.current_time() - killed
    assert isinstance(reader.outcome, mcp_ws.Failed)
    error = reader.outcome.error
    assert isinstance(error, MCPError)
    assert error.error.code == mcp_ws.OUTCOME_UNKNOWN
    assert waited <= 5 + 1.5  # the lease, and a poll


async def test_a_client_whose_resume_lands_on_another_replica_finishes_every_answer_once(
    anyio_backend: str,
    tmp_path: Path,
    redis_url: str,  # noqa: F811
) -> None:
    """No affinity: every backend calls itself ``anywhere``, so nginx's map sends a resume
    to any backend. The relay in front of nginx cuts the client's link twice mid-answer;
    a resume that lands on another replica is refused, and the client reads each
    streamed call on from Redis by its handle there: every delta once, each call run
    once (all backends count runs in one file)."""
    runs = tmp_path / "runs"
    store = ("--store", redis_url, "--node", "anywhere", "--resume-grace", "10")
    async with deployment(tmp_path, runs=runs, extra=store) as (url, _):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        results: dict[str, list[mcp_ws.StreamEvent]] = {}
        async with (
            cut_proxy(port) as proxy,
            mcp_ws.connect(proxy.url()) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()

            async def one(tag: str) -> None:
                arguments = {"tag": tag, "count": 60, "pause": 0.01}
                async with mcp_ws.stream_tool(session, "tagged", arguments) as stream:
                    results[tag] = await collect(stream)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for i in range(4):
                        tg.start_soon(one, f"x{i}")
                    for _ in range(2):
                        await anyio.sleep(0.2)
                        proxy.cut()
    assert sorted(results) == ["x0", "x1", "x2", "x3"]
    for tag, events in results.items():
        assert isinstance(events[-1], mcp_ws.Completed), (tag, events[-1])
        assert [d.seq for d in deltas(events)] == list(range(1, 61))
        assert "".join(d.text for d in deltas(events)) == "".join(f"{tag}.{i} " for i in range(60))
    assert sorted(runs.read_text().split()) == ["x0", "x1", "x2", "x3"]  # each ran once
