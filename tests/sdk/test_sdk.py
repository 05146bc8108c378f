"""The SDK binding over real loopback sockets, on asyncio and trio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CreateMessageResult,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

import mcp_ws

from ..livehelpers import app_process, live_server, session_to

pytestmark = pytest.mark.anyio


def text_of(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def test_client_session_lists_and_calls_everything() -> None:
    async with live_server() as (server, _), session_to(server.url) as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        assert {"echo", "add", "progress", "sleepy", "big"} <= tools
        assert text_of(await s.call_tool("echo", {"text": "héllo"})) == "héllo"
        assert text_of(await s.call_tool("add", {"a": 2, "b": 40})) == "42"
        resources = await s.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["test://greeting"]
        read = await s.read_resource("test://greeting")
        assert read.contents[0].text == "hello from a resource"  # type: ignore[union-attr]
        prompts = await s.list_prompts()
        assert [p.name for p in prompts.prompts] == ["review"]
        prompt = await s.get_prompt("review", {"code": "x = 1"})
        assert prompt.messages[0].content.text == "Please review: x = 1"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_client_in_both_protocol_eras(mode: str) -> None:
    async with live_server() as (server, _):
        async with Client(mcp_ws.connect(server.url), mode=mode) as client:
            assert text_of(await client.call_tool("echo", {"text": "era"})) == "era"
            tools = await client.list_tools()
            assert "add" in {t.name for t in tools.tools}
            legacy = client.protocol_version == "2025-11-25"
            assert legacy is (mode == "legacy")


async def test_progress_arrives_in_order_before_the_result() -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with live_server() as (server, _), session_to(server.url) as s:
        result = await s.call_tool("progress", {"steps": 50}, progress_callback=on_progress)
        assert text_of(result) == "50 steps"
        assert seen == [(float(i), f"step {i}") for i in range(1, 51)]


async def test_cancel_stops_the_handler_and_the_session_goes_on() -> None:
    async with live_server() as (server, probe), session_to(server.url) as s:
        async with anyio.create_task_group() as tg:
            tg.start_soon(s.call_tool, "sleepy", {"seconds": 30})
            with anyio.fail_after(5):
                await probe.started.wait()
            tg.cancel_scope.cancel()
        with anyio.fail_after(5):
            await probe.cancelled.wait()
        assert not probe.finished.is_set()
        assert text_of(await s.call_tool("echo", {"text": "still here"})) == "still here"


async def test_request_timeout_sends_the_cancel() -> None:
    async with live_server() as (server, probe), session_to(server.url) as s:
        with pytest.raises(MCPError) as caught:
            await s.call_tool("sleepy", {"seconds": 30}, read_timeout_seconds=0.3)
        assert caught.value.error.code == REQUEST_TIMEOUT
        with anyio.fail_after(5):
            await probe.cancelled.wait()
        assert text_of(await s.call_tool("add", {"a": 1, "b": 1})) == "2"


async def test_sampling_elicitation_and_roots_from_inside_tools() -> None:
    async def sampling(context: Any, params: Any) -> CreateMessageResult:
        question = params.messages[0].content.text
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=f"answer to {question}"),
            model="test-model",
        )

    async def elicitation(context: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def list_roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root.model_validate({"uri": "file:///work", "name": "work"})])

    callbacks: dict[str, Any] = {
        "sampling_callback": sampling,
        "elicitation_callback": elicitation,
        "list_roots_callback": list_roots,
    }
    async with live_server() as (server, _), session_to(server.url, **callbacks) as s:
        assert text_of(await s.call_tool("ask_model", {"question": "q?"})) == "answer to q?"
        assert text_of(await s.call_tool("ask_user", {})) == "accept:Ada"
        assert text_of(await s.call_tool("roots", {})) == "file:///work"


async def test_64_concurrent_calls() -> None:
    results: dict[int, str] = {}
    async with live_server() as (server, _), session_to(server.url) as s:

        async def one(i: int) -> None:
            results[i] = text_of(await s.call_tool("add", {"a": i, "b": 1000}))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(one, i)
    assert results == {i: str(i + 1000) for i in range(64)}


async def test_32_mib_result_while_other_calls_flow() -> None:
    size = 32 * 1024 * 1024
    small_done: list[str] = []
    async with live_server() as (server, _), session_to(server.url) as s:
        big_result: list[str] = []

        async def big() -> None:
            big_result.append(text_of(await s.call_tool("big", {"size": size})))

        async def small(i: int) -> None:
            small_done.append(text_of(await s.call_tool("echo", {"text": str(i)})))

        with anyio.fail_after(50):
            async with anyio.create_task_group() as tg:
                tg.start_soon(big)
                for i in range(20):
                    tg.start_soon(small, i)
        assert len(big_result[0]) == size
        assert sorted(small_done, key=int) == [str(i) for i in range(20)]


async def test_server_killed_mid_call_fails_the_call_promptly(anyio_backend: str) -> None:
    async with app_process(anyio_backend, 30) as (process, url):
        # Without resume; with it, tests/sdk/test_resume.py.
        async with session_to(url, resume=False) as s, anyio.create_task_group() as tg:

            async def kill_soon() -> None:
                await anyio.sleep(0.3)
                process.kill()

            tg.start_soon(kill_soon)
            with anyio.fail_after(10), pytest.raises(MCPError) as caught:
                await s.call_tool("sleepy", {"seconds": 30})
        assert caught.value.error.code == CONNECTION_CLOSED
        assert "connection" in caught.value.error.message


async def test_graceful_shutdown_lets_in_flight_calls_finish() -> None:
    async with live_server() as (server, probe), session_to(server.url) as s:
        outcome: list[str] = []

        async def call() -> None:
            outcome.append(text_of(await s.call_tool("sleepy", {"seconds": 0.5})))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(5):
                await probe.started.wait()
            await server.shutdown(grace=10)
        assert outcome == ["rested"]
        assert server.connection_count == 0
        with pytest.raises(OSError):
            async with mcp_ws.connect(server.url):
                pass


async def test_json_text_fallback_with_client_session() -> None:
    async with live_server() as (server, _):
        async with mcp_ws.connect(server.url, subprotocols=["mcp"]) as (read, write):
            from mcp.client.session import ClientSession

            async with ClientSession(read, write) as s:
                await s.initialize()
                assert text_of(await s.call_tool("echo", {"text": "json"})) == "json"


ROOT = Path(__file__).resolve().parents[2]


async def test_the_example_client_and_server_work_together() -> None:
    root = ROOT
    async with await anyio.open_process(
        [sys.executable, str(root / "examples" / "server.py"), "--port", "0"]
    ) as server:
        assert server.stdout is not None
        with anyio.fail_after(20):
            url = (await server.stdout.receive()).decode().strip().splitlines()[0]
        with anyio.fail_after(30):
            client = await anyio.run_process(
                [sys.executable, str(root / "examples" / "client.py"), url]
            )
        server.terminate()
    out = client.stdout.decode()
    assert "tools: add, countdown" in out
    assert "add: 5" in out
    assert out.index("progress 3/3 1...") < out.index("countdown: liftoff")
