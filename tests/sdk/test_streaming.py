"""The streaming extension's guarantees over mcp-ws, on asyncio and trio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, ImageContent, TextContent

import mcp_ws

from ..livehelpers import app_process, live_server, session_to

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def collect(stream: mcp_ws.ToolStream) -> list[mcp_ws.StreamEvent]:
    return [event async for event in stream]


def check_shape(events: list[mcp_ws.StreamEvent]) -> list[mcp_ws.Delta]:
    """Started first, deltas with seq 1, 2, ... and no gap, exactly one terminal, last."""
    assert isinstance(events[0], mcp_ws.Started)
    terminals = [e for e in events if isinstance(e, mcp_ws.Completed | mcp_ws.Failed)]
    assert len(terminals) == 1
    assert events[-1] is terminals[0]
    deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
    assert [d.seq for d in deltas] == list(range(1, len(deltas) + 1))
    assert len(deltas) == len(events) - 2
    return deltas


def text_of(result: Any) -> str:
    return "".join(b.text for b in result.content if isinstance(b, TextContent))


async def test_deltas_in_order_then_one_completed_with_the_same_text() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _), session_to(server.url) as session:
            async with mcp_ws.stream_tool(session, "generate", {"count": 300}) as stream:
                events = await collect(stream)
                assert stream.direct  # mcp-ws carried the deltas on the call's stream
                # nothing after the terminal event
                with pytest.raises(StopAsyncIteration):
                    await stream.__anext__()
            deltas = check_shape(events)
            assert len(deltas) == 300
            final = events[-1]
            assert isinstance(final, mcp_ws.Completed)
            expected = "".join(f"t{i} " for i in range(300))
            assert "".join(d.text for d in deltas) == expected == text_of(final.result)
            assert stream.result is final.result
            assert stream.text == expected
            meta = final.result.meta or {}
            assert meta[mcp_ws.EXTENSION_ID] == {"lastSeq": 300}


async def test_blocks_by_index_raw_binary_and_structured_deltas() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _), session_to(server.url) as session:
            async with mcp_ws.stream_tool(session, "mixed") as stream:
                events = await collect(stream)
            deltas = check_shape(events)
            assert isinstance(events[0], mcp_ws.Started)
            assert isinstance(events[0].handle, str)  # every streamed call has one
            assert events[0] == mcp_ws.Started(meta={"model": "test-1"}, handle=events[0].handle)
            image = deltas[1]
            # on mcp-ws binary travels as MessagePack bin: bytes, not base64 text
            assert image.blocks[0]["data"] == b"\x00\x01\xffPNG"
            assert image.data == b"\x00\x01\xffPNG"
            assert isinstance(image.content[0], ImageContent)
            assert [d.structured for d in deltas[-2:]] == [{"rows": 1}, {"done": True}]
            result = stream.result
            assert [type(b).__name__ for b in result.content] == [
                "TextContent",
                "ImageContent",
                "TextContent",
            ]
            first, picture, second = result.content
            assert isinstance(first, TextContent)
            assert first.text == "Hello, world"
            assert isinstance(picture, ImageContent)
            assert picture.data == "AAH/UE5H"
            assert isinstance(second, TextContent)
            assert second.text == "second"
            assert result.structured_content == {"rows": 1, "done": True}
            assert stream.text == "Hello, worldsecond"


async def test_a_tool_error_after_deltas_is_one_failed_event() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _), session_to(server.url) as session:
            async with mcp_ws.stream_tool(session, "stream_then_fail") as stream:
                events = await collect(stream)
            deltas = check_shape(events)
            assert [d.text for d in deltas] == ["partial ", "output"]
            failed = events[-1]
            assert isinstance(failed, mcp_ws.Failed)
            assert isinstance(failed.error, mcp_ws.ToolCallError)
            assert "the model fell over" in str(failed.error)
            assert failed.result is not None
            assert failed.result.is_error
            assert stream.result is failed.result


async def test_leaving_early_cancels_the_producer_within_one_send() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, probe), session_to(server.url) as session:
            seen = 0
            async with mcp_ws.stream_tool(
                session, "generate", {"count": 100_000, "pause": 0.01}
            ) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        seen += 1
                        if seen == 5:
                            break
            assert stream.outcome is None  # no terminal event was consumed
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
            stopped_at = probe.sent
            await anyio.sleep(0.2)
            assert probe.sent == stopped_at  # the producer really stopped
            assert stopped_at < seen + 10  # within a send or so of what the client saw
            # the session is still usable
            assert text_of(await session.call_tool("echo", {"text": "after"})) == "after"


async def test_the_first_delta_goes_out_before_the_producer_goes_on(anyio_backend: str) -> None:
    # Later deltas may be coalesced while the producer runs; the first one may not wait
    # for the producer's next yield (the server runs in its own process, so its busy
    # loop does not stall this client).
    with anyio.fail_after(30):
        async with app_process(anyio_backend, 30) as (_, url), session_to(url) as session:
            arrivals: list[float] = []
            async with mcp_ws.stream_tool(session, "first_then_busy", {"busy": 0.6}) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        arrivals.append(anyio.current_time())
            assert stream.text == "first second"
            assert len(arrivals) == 2
            assert arrivals[1] - arrivals[0] >= 0.5


async def test_a_fast_producer_cancelled_by_the_client_ends_cancelled_not_failed() -> None:
    # The peer's CANCEL closes the stream at once; the SDK learns of it a moment later.
    # A producer sending in between waits for that cancellation instead of failing with
    # CallClosedError (which the SDK would log as a tool error).
    for _ in range(3):
        with anyio.fail_after(20):
            async with live_server() as (server, probe), session_to(server.url) as session:
                async with mcp_ws.stream_tool(session, "generate", {"count": 10**7}) as stream:
                    async for event in stream:
                        if isinstance(event, mcp_ws.Delta) and event.seq == 50:
                            break
                with anyio.fail_after(5):
                    await probe.stream_cancelled.wait()
                assert probe.send_error is None


async def test_cancel_inside_the_block_ends_the_stream_with_one_failed_event() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, probe), session_to(server.url) as session:
            async with mcp_ws.stream_tool(
                session, "generate", {"count": 100_000, "pause": 0.01}
            ) as stream:
                events: list[mcp_ws.StreamEvent] = []
                async for event in stream:
                    events.append(event)
                    if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                        stream.cancel()
                        stream.cancel()  # idempotent
                with anyio.fail_after(5):
                    await probe.stream_cancelled.wait()
            deltas = check_shape(events)
            assert len(deltas) >= 3  # deltas already on their way may still arrive
            failed = events[-1]
            assert isinstance(failed, mcp_ws.Failed)
            assert isinstance(failed.error, mcp_ws.CallCancelledError)
            assert stream.outcome is failed
            with pytest.raises(mcp_ws.CallCancelledError):
                _ = stream.result
            assert text_of(await session.call_tool("echo", {"text": "after"})) == "after"


async def test_a_timeout_is_one_failed_event_and_cancels_the_server() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, probe), session_to(server.url) as session:
            async with mcp_ws.stream_tool(
                session, "generate", {"count": 100_000, "pause": 0.01}, read_timeout=0.5
            ) as stream:
                events = await collect(stream)
            check_shape(events)
            failed = events[-1]
            assert isinstance(failed, mcp_ws.Failed)
            assert isinstance(failed.error, MCPError)
            assert failed.error.error.code == REQUEST_TIMEOUT
            with pytest.raises(MCPError):
                _ = stream.result
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()


async def test_connection_loss_mid_stream_is_one_failed_event(anyio_backend: str) -> None:
    with anyio.fail_after(30):
        async with app_process(anyio_backend, 30) as (process, url):
            # Without resume; with it, tests/sdk/test_resume.py.
            async with session_to(url, resume=False) as session:
                events: list[mcp_ws.StreamEvent] = []
                async with mcp_ws.stream_tool(
                    session, "generate", {"count": 100_000, "pause": 0.005}
                ) as stream:
                    async for event in stream:
                        events.append(event)
                        if len(events) == 10:
                            process.kill()
            check_shape(events)
            failed = events[-1]
            assert isinstance(failed, mcp_ws.Failed)
            assert isinstance(failed.error, MCPError)
            assert failed.error.error.code == CONNECTION_CLOSED


async def test_a_slow_reader_blocks_the_producer_and_small_calls_still_flow() -> None:
    chunk = 16 * 1024
    window = mcp_ws.Settings().initial_window  # the client's receive window per stream
    with anyio.fail_after(30):
        async with live_server() as (server, probe), session_to(server.url) as session:
            async with mcp_ws.stream_tool(
                session, "bulk", {"chunks": 2000, "size": chunk}
            ) as stream:  # 32 MiB on offer
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                await probe.stream_started.wait()
                await anyio.sleep(0.5)  # not reading: the producer must stall
                stalled_at = probe.sent
                assert 0 < stalled_at * chunk <= window + 2 * chunk
                assert server.queued_bytes <= 2 * chunk  # not buffered on the server either
                # no head-of-line blocking: small calls on the same connection go through
                for i in range(20):
                    result = await session.call_tool("echo", {"text": f"small {i}"})
                    assert text_of(result) == f"small {i}"
                assert probe.sent == stalled_at
                rest = await collect(stream)
            assert probe.sent == 2000
            assert isinstance(rest[-1], mcp_ws.Completed)
            received = sum(len(e.text) for e in rest if isinstance(e, mcp_ws.Delta))
            assert received == 2000 * chunk


def memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
async def test_a_producer_offering_1_gib_to_a_stalled_reader_keeps_memory_bounded(
    anyio_backend: str,
) -> None:
    chunk = 64 * 1024
    settings = mcp_ws.Settings()
    windows_kib = (settings.initial_window + settings.connection_window) // 1024
    with anyio.fail_after(40):
        async with app_process(anyio_backend, 40) as (process, url), session_to(url) as session:
            # warm up: the same tool, read to the end, so pools and caches are filled
            async with mcp_ws.stream_tool(session, "bulk", {"chunks": 64, "size": chunk}) as s:
                await collect(s)
            before = memory_kib(process.pid, "VmHWM")
            offer = {"chunks": (1 << 30) // chunk, "size": chunk}  # 1 GiB
            async with mcp_ws.stream_tool(session, "bulk", offer) as stream:
                first = await stream.__anext__()
                assert isinstance(first, mcp_ws.Started)
                await anyio.sleep(2)  # the reader stalls; an unbounded producer would
                # have queued hundreds of MiB by now
                growth = memory_kib(process.pid, "VmHWM") - before
                assert growth < windows_kib + 16 * 1024, f"server RSS grew {growth} KiB"
                # the connection still answers small calls while the bulk stream waits
                echoed = await session.call_tool("echo", {"text": "still here"})
                assert text_of(echoed) == "still here"


async def test_1000_concurrent_streaming_calls_on_one_connection() -> None:
    with anyio.fail_after(60):
        async with live_server() as (server, _), session_to(server.url) as session:
            texts: dict[int, str] = {}

            async def one(i: int) -> None:
                async with mcp_ws.stream_tool(session, "generate", {"count": 3}) as stream:
                    events = await collect(stream)
                deltas = check_shape(events)
                assert isinstance(events[-1], mcp_ws.Completed)
                texts[i] = "".join(d.text for d in deltas)
                assert texts[i] == text_of(stream.result)

            async with anyio.create_task_group() as tg:
                for i in range(1000):
                    tg.start_soon(one, i)
            assert len(texts) == 1000
            assert set(texts.values()) == {"t0 t1 t2 "}


async def test_a_plain_call_gets_the_whole_result_and_progress_carries_text() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _), session_to(server.url) as session:
            result = await session.call_tool("generate", {"count": 50})
            assert text_of(result) == "".join(f"t{i} " for i in range(50))
            assert not (result.meta or {}).get(mcp_ws.EXTENSION_ID)  # no opt-in, no marker
            messages: list[str] = []

            async def on_progress(
                progress: float, total: float | None, message: str | None
            ) -> None:
                messages.append(message or "")

            result = await session.call_tool(
                "generate", {"count": 30, "pause": 0.02}, progress_callback=on_progress
            )
            assert text_of(result) == "".join(f"t{i} " for i in range(30))
            assert 2 <= len(messages) < 30  # rate-limited, but alive
            assert "".join(messages) == text_of(result)  # the recent text, all of it


async def test_a_tool_without_the_extension_is_a_single_completed() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _), session_to(server.url) as session:
            async with mcp_ws.stream_tool(session, "echo", {"text": "plain"}) as stream:
                events = await collect(stream)
            assert len(events) == 1
            assert isinstance(events[0], mcp_ws.Completed)
            assert text_of(stream.result) == "plain"


async def test_the_server_advertises_the_extension() -> None:
    with anyio.fail_after(20):
        async with live_server() as (server, _):
            async with (
                mcp_ws.connect(server.url) as (read, write),
                ClientSession(read, write) as session,
            ):
                init = await session.initialize()
            assert mcp_ws.EXTENSION_ID in (init.capabilities.experimental or {})


async def run_example(name: str, *args: str) -> str:
    with anyio.fail_after(40):
        done = await anyio.run_process([sys.executable, str(ROOT / "examples" / name), *args])
    return done.stdout.decode()


async def test_the_chat_example_streams_the_answer() -> None:
    out = await run_example("chat_stream.py", "0.001")
    assert "bot: mcp-ws carries each tool call" in out
    assert "[24 tokens, complete: True]" in out


async def test_the_long_job_example_shows_logs_and_intermediate_results() -> None:
    out = await run_example("long_job.py", "3", "0.001")
    lines = out.splitlines()
    assert (
        lines.index("log: batch 1/3 done")
        < lines.index("    intermediate: {'batches': 1, 'total': 1}")
        < lines.index("log: batch 3/3 done")
    )
    assert lines[-1] == "final: {'batches': 3, 'total': 14}"


async def test_the_early_stop_example_cancels_the_search() -> None:
    out = await run_example("early_stop.py", "20", "0.001")
    assert "agent: found 20, acting on it and cancelling the rest" in out
    stopped = int(out.split("server: stopped after ")[1].split()[0])
    assert 21 <= stopped < 100
