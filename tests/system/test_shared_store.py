"""Three backends behind real nginx (no affinity) sharing one real Redis
(``mcp-ws serve --store redis://``): a client process SIGKILLed mid-answer and a new
client process that reads the answer on through nginx, on whichever backend it lands;
a backend SIGKILLed mid-answer, and a reader on another backend told the outcome is
unknown within the producer's lease."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

import mcp_ws

from ..sdk.test_attach import client
from ..sdk.test_redis_store import redis_url  # noqa: F401 - the fixture
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
