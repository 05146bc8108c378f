"""Re-attach (docs/streaming.md, "Re-attach"): handles on streamed calls, reading a call
again from a cursor, calls that outlive their session, and every documented error, over
mcp-ws on asyncio and trio."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

import mcp_ws
from mcp_ws.sdk.store import EmbeddedStore
from mcp_ws.transport import bearer_token
from mcp_ws.transport.resume import ResumeLimits
from mcp_ws.transport.websocket import open_websocket

from ..apps import Probe, build_app
from ..cutproxy import cut_proxy
from .test_streaming import collect, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TOKENS = [f"t{i} " for i in range(60)]


@asynccontextmanager
async def server_of(
    probe: Probe, *, grace: float = 5.0, **options: Any
) -> AsyncIterator[mcp_ws.McpWsServer]:
    async with mcp_ws.serving(build_app(probe), port=0, resume_grace=grace, **options) as s:
        yield s


@asynccontextmanager
async def client(
    url: str, token: str | None = None, subprotocols: list[str] | None = None
) -> AsyncIterator[ClientSession]:
    offer = subprotocols or ["mcp-ws.v1", "mcp"]
    async with (
        mcp_ws.connect(url, token=token, resume=False, subprotocols=offer) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def vanish_after(
    server: mcp_ws.McpWsServer,
    deltas: int,
    arguments: dict[str, Any],
    token: str | None = None,
    subprotocols: list[str] | None = None,
) -> tuple[str, list[mcp_ws.StreamEvent]]:
    """Start ``generate`` through a relay, read ``deltas`` deltas, then drop the link
    (no cancel reaches the server: a killed client, a reloaded page). Returns the
    call's handle and the events the vanished client saw."""
    seen: list[mcp_ws.StreamEvent] = []
    async with (
        cut_proxy(server.port) as proxy,
        client(proxy.url(), token, subprotocols) as session,
    ):
        async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
            async for event in stream:
                seen.append(event)
                if len(seen) == deltas + 1:
                    proxy.cut()
                    break
            handle = stream.handle
    assert isinstance(handle, str)
    assert stream.last_seq == deltas
    return handle, seen


def deltas(events: list[mcp_ws.StreamEvent]) -> list[mcp_ws.Delta]:
    return [e for e in events if isinstance(e, mcp_ws.Delta)]


async def failure_of(session: ClientSession, handle: Any, after: Any = None) -> MCPError:
    async with mcp_ws.attach(session, handle, after) as stream:
        events = await collect(stream)
    assert len(events) == 1, events
    assert isinstance(events[0], mcp_ws.Failed)
    assert isinstance(events[0].error, MCPError)
    return events[0].error


async def test_a_streamed_call_has_a_handle_and_an_attach_reads_it_whole(
    anyio_backend: str,
) -> None:
    probe = Probe()
    async with server_of(probe) as server, client(server.url) as session:
        async with mcp_ws.stream_tool(session, "generate", {"count": 5}) as stream:
            events = await collect(stream)
        assert isinstance(events[0], mcp_ws.Started)
        handle = events[0].handle
        assert isinstance(handle, str)
        assert len(handle) >= 32
        assert stream.handle == handle
        async with client(server.url) as other:
            async with mcp_ws.attach(other, handle) as attached:
                again = await collect(attached)
        assert attached.direct  # on the attach request's own stream, with its credit
        assert again[0] == mcp_ws.Started(handle=handle)
        assert [(d.seq, d.text) for d in deltas(again)] == [(d.seq, d.text) for d in deltas(events)]
        assert isinstance(again[-1], mcp_ws.Completed)
        assert again[-1].result == stream.result  # the outcome as the caller got it


async def test_a_call_outlives_its_vanished_client_and_a_new_one_reads_on(
    anyio_backend: str,
) -> None:
    probe = Probe()
    async with server_of(probe, grace=0.5) as server:
        handle, seen = await vanish_after(server, 5, {"count": 60, "pause": 0.01})
        async with client(server.url) as session:
            async with mcp_ws.attach(session, handle, after=5) as stream:
                events = await collect(stream)
    assert events[0] == mcp_ws.Started(handle=handle)
    after = deltas(events)
    assert [d.seq for d in after] == list(range(6, 61))
    assert len(after) == len(events) - 2
    assert isinstance(events[-1], mcp_ws.Completed)
    shown = "".join(d.text for d in deltas(seen) + after)
    assert shown == "".join(TOKENS) == text_of(events[-1].result)  # no token twice
    assert not probe.stream_cancelled.is_set()


SUBPROTOCOLS = pytest.mark.parametrize("subprotocol", ["mcp-ws.v1", "mcp"])


@SUBPROTOCOLS
async def test_a_vanished_clients_call_runs_on_for_its_readers_then_the_grace(
    anyio_backend: str, subprotocol: str
) -> None:
    """The connection's end is not a cancel, on either subprotocol: the call runs on
    while a reader reads, and is cancelled once it had none for the grace."""
    probe = Probe()
    async with server_of(probe, grace=0.5) as server:
        arguments = {"count": 100_000, "pause": 0.01}
        handle, _ = await vanish_after(server, 3, arguments, subprotocols=[subprotocol])
        async with client(server.url, subprotocols=[subprotocol]) as session:
            async with mcp_ws.attach(session, handle, after=3) as stream:
                read = []
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        read.append(event.seq)
                        if len(read) == 10:
                            break
            assert not probe.stream_cancelled.is_set()
            with anyio.fail_after(10):
                await probe.stream_cancelled.wait()  # no reader for the grace
            async with mcp_ws.attach(session, handle, after=13) as stream:
                rest = await collect(stream)
    assert read == list(range(4, 14))
    assert isinstance(rest[-1], mcp_ws.Failed)
    assert rest[-1].error.error.code == -32003  # type: ignore[attr-defined]
    assert [d.seq for d in deltas(rest)] == list(range(14, 14 + len(rest) - 2))


@SUBPROTOCOLS
async def test_the_callers_own_cancel_stops_a_kept_call_at_once(
    anyio_backend: str, subprotocol: str
) -> None:
    """Leaving ``stream_tool`` early cancels the call (CANCEL over mcp-ws, a
    ``notifications/cancelled`` over JSON text): not taken for a lost connection, whose
    call would run on for the grace (30 s here)."""
    probe = Probe()
    async with (
        server_of(probe, grace=30) as server,
        client(server.url, subprotocols=[subprotocol]) as session,
    ):
        arguments = {"count": 100_000, "pause": 0.01}
        async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
            async for event in stream:
                if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                    break
        with anyio.fail_after(5):
            await probe.stream_cancelled.wait()
        assert stream.handle is not None
        async with mcp_ws.attach(session, stream.handle) as reader:
            events = await collect(reader)
        result = await session.call_tool("echo", {"text": "the session goes on"})
    assert isinstance(events[-1], mcp_ws.Failed)
    assert events[-1].error.error.code == -32003  # type: ignore[attr-defined]
    assert text_of(result) == "the session goes on"


@SUBPROTOCOLS
async def test_a_cancel_then_a_close_at_once_is_still_a_cancel(
    anyio_backend: str, subprotocol: str
) -> None:
    """The caller leaves its stream (a cancel) and closes its connection right after:
    the cancel arrived first, so the call is cancelled, not kept for the grace (30 s)."""
    probe = Probe()
    async with server_of(probe, grace=30) as server:
        for _ in range(3):  # the close follows the cancel as closely as it can
            probe.stream_cancelled = anyio.Event()
            async with client(server.url, subprotocols=[subprotocol]) as session:
                arguments = {"count": 100_000, "pause": 0.01}
                async with mcp_ws.stream_tool(session, "generate", arguments) as stream:
                    async for event in stream:
                        if isinstance(event, mcp_ws.Delta) and event.seq == 2:
                            break
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()


async def test_a_raw_cancel_sent_with_the_close_is_still_a_cancel(anyio_backend: str) -> None:
    """A JSON-text client sends ``notifications/cancelled`` and closes in the same
    breath: the server reads both before the app sees the cancel, and still takes it
    for a cancel, not for a lost connection whose call runs on for the grace (30 s)."""
    probe = Probe()
    async with server_of(probe, grace=30) as server:
        ws = await open_websocket(server.url, subprotocols=["mcp"])
        try:
            hello = {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            }
            await ws.send(
                [json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})]
            )
            with anyio.fail_after(5):
                assert json.loads(await ws.receive() or "{}")["id"] == 1
            call = {
                "name": "generate",
                "arguments": {"count": 100_000, "pause": 0.01},
                "_meta": {"partialResultToken": "p"},
            }
            await ws.send(
                [
                    json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                    json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}),
                ]
            )
            partials = 0
            with anyio.fail_after(5):
                while partials < 3:
                    message = json.loads(await ws.receive() or "{}")
                    partials += message.get("method") == "notifications/tools/partial_result"
            cancel = {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 2, "reason": "stop"},
            }
            await ws.send([json.dumps(cancel)])
        finally:
            await ws.close()
            await ws.aclose()
        with anyio.fail_after(5):
            await probe.stream_cancelled.wait()


async def test_leaving_serving_cancels_the_calls_that_outlive_their_session(
    anyio_backend: str,
) -> None:
    """A server's drain waits ``shutdown_grace`` for the calls of vanished clients, then
    cancels them: leaving the block does not wait for their resume grace (30 s)."""
    probe = Probe()
    with anyio.fail_after(15):
        async with server_of(probe, grace=30, shutdown_grace=0.3) as server:
            await vanish_after(server, 2, {"count": 100_000, "pause": 0.01})
            assert not probe.stream_cancelled.is_set()
    assert probe.stream_cancelled.is_set()


async def test_vanished_clients_calls_keep_their_share_and_stall_no_other_call(
    anyio_backend: str,
) -> None:
    """Four calls whose client vanished would keep more than the whole store (4 x 80 kB
    against 200 kB); they keep at most the share of calls no one reads (a quarter), so
    another client's call streams on at once instead of waiting out their grace (30 s)."""
    probe = Probe()
    store = EmbeddedStore(max_call_bytes=80_000, max_total_bytes=200_000)
    limits = ResumeLimits(max_detached=0)  # a cut ends the session at once
    options: dict[str, Any] = {"store": store, "resume_limits": limits, "shutdown_grace": 0.2}
    async with server_of(probe, grace=30, **options) as server:
        started = 0

        async def vanishing(session: ClientSession) -> None:
            nonlocal started
            arguments = {"chunks": 1_000, "size": 1_000, "pause": 0.01}
            async with mcp_ws.stream_tool(session, "bulk", arguments) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta) and event.seq == 1:
                        started += 1

        with anyio.fail_after(10):
            async with cut_proxy(server.port) as proxy, client(proxy.url()) as session:
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(vanishing, session)
                    while started < 4:
                        await anyio.sleep(0.01)
                    proxy.cut()
            while store.unread_bytes < store.max_unread_bytes - 4 * 1_100:
                await anyio.sleep(0.01)  # their producers store what no one reads
        await anyio.sleep(0.6)  # 400 kB/s together: past the whole store, if they could
        assert store.unread_bytes <= store.max_unread_bytes == 50_000
        with anyio.fail_after(10):
            async with client(server.url) as session:
                arguments = {"chunks": 300, "size": 1_000}  # 330 kB through a 200 kB store
                async with mcp_ws.stream_tool(session, "bulk", arguments) as stream:
                    events = await collect(stream)
        assert len(deltas(events)) == 300
        assert isinstance(events[-1], mcp_ws.Completed)
        assert text_of(events[-1].result) == "300 chunks"
        assert store.bytes <= store.max_total_bytes


async def test_after_none_starts_at_the_first_kept_event_and_after_past_the_end_waits(
    anyio_backend: str,
) -> None:
    probe = Probe()
    async with server_of(probe) as server, client(server.url) as session:
        handle, _ = await vanish_after(server, 2, {"count": 30, "pause": 0.02})
        async with mcp_ws.attach(session, handle, after=29) as late:
            events = await collect(late)
        async with mcp_ws.attach(session, handle) as whole:
            every = await collect(whole)
    assert [type(e) for e in events] == [mcp_ws.Started, mcp_ws.Delta, mcp_ws.Completed]
    assert [d.seq for d in deltas(events)] == [30]
    assert [d.seq for d in deltas(every)] == list(range(1, 31))


async def test_no_reader_within_the_grace_cancels_the_call(anyio_backend: str) -> None:
    probe = Probe()
    async with server_of(probe, grace=0.3) as server:
        handle, _ = await vanish_after(server, 1, {"count": 1000, "pause": 0.01})
        with anyio.fail_after(10):
            await probe.stream_cancelled.wait()  # resume grace, then the call's grace
        async with client(server.url) as session, mcp_ws.attach(session, handle) as stream:
            events = await collect(stream)
    outcome = events[-1]
    assert isinstance(outcome, mcp_ws.Failed)
    assert isinstance(outcome.error, MCPError)
    assert outcome.error.error.code == -32003
    assert outcome.error.error.message == "the call was cancelled"
    assert [type(e) for e in events[1:-1]] == [mcp_ws.Delta] * (len(events) - 2)


async def test_an_attached_reader_keeps_the_call_running(anyio_backend: str) -> None:
    probe = Probe()
    async with server_of(probe, grace=0.2) as server:
        handle, _ = await vanish_after(server, 1, {"count": 60, "pause": 0.02})
        async with client(server.url) as session:
            async with mcp_ws.attach(session, handle, after=1) as stream:
                events = await collect(stream)  # ~1.2 s, far past both graces
    assert isinstance(events[-1], mcp_ws.Completed)
    assert not probe.stream_cancelled.is_set()


async def test_leaving_an_attach_early_detaches_and_cancel_cancels_the_call(
    anyio_backend: str,
) -> None:
    probe = Probe()
    async with server_of(probe) as server, client(server.url) as session:
        async with mcp_ws.stream_tool(session, "generate", {"count": 200, "pause": 0.01}) as call:
            started = await call.__anext__()
            assert isinstance(started, mcp_ws.Started)
            assert started.handle is not None
            async with client(server.url) as other:
                async with mcp_ws.attach(other, started.handle) as reader:
                    async for event in reader:
                        if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                            break  # leaves: only this reader goes
                await anyio.sleep(0.1)
                assert not probe.stream_cancelled.is_set()
                async with mcp_ws.attach(other, started.handle, after=5) as reader:
                    async for event in reader:
                        if isinstance(event, mcp_ws.Delta):
                            reader.cancel()  # the call itself
                            break
                    events = await collect(reader)
            rest = await collect(call)
    assert isinstance(events[-1], mcp_ws.Failed)
    assert events[-1].error.error.code == -32003  # type: ignore[attr-defined]
    assert probe.stream_cancelled.is_set()
    assert isinstance(rest[-1], mcp_ws.Failed)  # the caller sees its call end too


async def test_bad_handles_and_cursors_get_documented_errors(anyio_backend: str) -> None:
    probe = Probe()
    auth = bearer_token("alice-token", "bob-token")
    async with server_of(probe, auth=auth) as server:
        async with client(server.url, "alice-token") as alice:
            async with mcp_ws.stream_tool(alice, "generate", {"count": 3}) as stream:
                await collect(stream)
            handle = stream.handle
            assert handle is not None
            unknown = await failure_of(alice, "x" * 32)
            malformed = await failure_of(alice, 12345)
            negative = await failure_of(alice, handle, -1)
            not_an_int = await failure_of(alice, handle, "3")
            # nothing else is affected: the same session still reads the call
            async with mcp_ws.attach(alice, handle, after=2) as fine:
                assert isinstance((await collect(fine))[-1], mcp_ws.Completed)
        async with client(server.url, "bob-token") as bob:
            foreign = await failure_of(bob, handle)
    for error in (unknown, malformed, foreign):
        assert (error.error.code, error.error.message) == (mcp_ws.UNKNOWN_HANDLE, "unknown handle")
        assert error.error.data is None
    assert negative.error.code == not_an_int.error.code == -32602


async def test_events_gone_and_expiry(anyio_backend: str) -> None:
    probe = Probe()
    store = EmbeddedStore(max_call_bytes=2000, retain=0.5)
    async with server_of(probe, store=store) as server, client(server.url) as session:
        async with mcp_ws.stream_tool(session, "bulk", {"chunks": 40, "size": 100}) as stream:
            await collect(stream)
        handle = stream.handle
        assert handle is not None
        gone = await failure_of(session, handle, 0)
        assert gone.error.code == mcp_ws.EVENTS_GONE
        earliest = gone.error.data["earliestSeq"]
        assert 20 < earliest <= 40  # about 2000 bytes of 130-byte events kept
        async with mcp_ws.attach(session, handle, after=earliest - 1) as kept:
            events = await collect(kept)
        assert [d.seq for d in deltas(events)] == list(range(earliest, 41))
        async with mcp_ws.attach(session, handle) as first_kept:
            assert len(await collect(first_kept)) == len(events)
        await anyio.sleep(0.6)
        expired = await failure_of(session, handle)
        assert expired.error.code == mcp_ws.UNKNOWN_HANDLE


async def test_a_paused_reader_slows_only_the_producer(anyio_backend: str) -> None:
    """No reader reads: the producer waits at the per-call budget, and other calls on
    the same connection go on."""
    probe = Probe()
    store = EmbeddedStore(max_call_bytes=20_000)
    async with server_of(probe, store=store, grace=0.2) as server:
        handle, _ = await vanish_after(server, 1, {"count": 100_000})
        async with client(server.url) as session:
            async with mcp_ws.attach(session, handle) as stream:  # the first kept on
                first = await stream.__anext__()  # Started, then nothing is read
                assert isinstance(first, mcp_ws.Started), first
                # The producer goes on while the reader's window takes events (the
                # store trims what was sent), then waits at the per-call budget. How
                # soon depends on the machine's speed: watch for it, bounded.
                held = -1
                with anyio.fail_after(10):
                    while probe.sent != held:
                        held = probe.sent
                        await anyio.sleep(0.3)
                assert probe.sent == held < 100_000  # the producer waits
                assert store.bytes <= 20_000 + 1024  # its events, its start and bookkeeping
                result = await session.call_tool("echo", {"text": "still here"})
                assert text_of(result) == "still here"
                read = 0
                async for _event in stream:
                    read += 1
                    if read == 2000:
                        break
                assert read == 2000
                assert probe.sent > held  # reading let it go on


async def test_store_false_keeps_no_calls(anyio_backend: str) -> None:
    probe = Probe()
    async with server_of(probe, store=False) as server, client(server.url) as session:
        async with mcp_ws.stream_tool(session, "generate", {"count": 3}) as stream:
            events = await collect(stream)
        assert events[0] == mcp_ws.Started()  # no handle
        assert stream.handle is None
        assert isinstance(events[-1], mcp_ws.Completed)
        error = await failure_of(session, "x" * 32)
        assert error.error.code == mcp_ws.UNKNOWN_HANDLE


async def cut_once_refused(
    probe: Probe, tag: str, cut_after: int, **options: Any
) -> tuple[list[mcp_ws.StreamEvent], int]:
    """A 60-token ``tagged`` call through a relay cut once after ``cut_after`` events,
    the client resuming; the server keeps no detached connection (``max_detached=0``),
    so the resume is refused. What the caller saw, and the resumes the server refused."""
    limits = ResumeLimits(max_detached=0)
    async with (
        server_of(probe, resume_limits=limits, **options) as server,
        cut_proxy(server.port) as proxy,
        mcp_ws.connect(proxy.url()) as (read, write),  # resume on
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        events: list[mcp_ws.StreamEvent] = []
        arguments = {"tag": tag, "count": 60, "pause": 0.01}
        async with mcp_ws.stream_tool(session, "tagged", arguments) as stream:
            async for event in stream:
                events.append(event)
                if len(events) == cut_after:
                    proxy.cut()
    assert server.resume is not None
    return events, server.resume.refused


async def test_a_refused_resume_reads_a_streamed_call_on_by_its_handle(
    anyio_backend: str,
) -> None:
    """The client's resume is refused; the streamed call runs on, kept by the server,
    and the client reads it on by its handle over a new connection instead of failing
    it with -32004: every delta once, the tool run once."""
    probe = Probe()
    events, refused = await cut_once_refused(probe, "r", 6)
    assert isinstance(events[-1], mcp_ws.Completed), events[-1]
    assert [d.seq for d in deltas(events)] == list(range(1, 61))
    assert "".join(d.text for d in deltas(events)) == "".join(f"r.{i} " for i in range(60))
    assert probe.runs == {"r": 1}
    assert refused >= 1  # it was a refused resume, not a resumed one


async def test_a_refused_resume_with_the_call_gone_is_outcome_unknown(anyio_backend: str) -> None:
    events, _ = await cut_once_refused(Probe(), "g", 3, store=False)
    outcome = events[-1]
    assert isinstance(outcome, mcp_ws.Failed)
    assert isinstance(outcome.error, MCPError)
    assert outcome.error.error.code == mcp_ws.OUTCOME_UNKNOWN
