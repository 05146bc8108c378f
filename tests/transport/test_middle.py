"""The I/O layer and the SDK binding without sockets: `MuxConnection`, `SessionBridge`
and the SDK's sessions over `memory_channel_pair`, on asyncio and trio. Cancel, credit
waits, connection loss and a clean close, with nothing but memory streams underneath."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, JSONRPCNotification, TextContent

import mcp_ws
from mcp_ws.protocol import ErrorCode, Role
from mcp_ws.protocol.events import ConnectionTerminated, Event, HelloReceived, MessageReceived
from mcp_ws.sdk.bridge import Inbox
from mcp_ws.transport import MemoryChannel, MuxConnection, memory_channel_pair

from ..apps import Probe
from ..livehelpers import memory_session as session_pair

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = anyio.Event()

    def __call__(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.changed.set()
        self.changed = anyio.Event()

    async def until(self, kind: type, count: int = 1) -> list[Event]:
        with anyio.fail_after(5):
            while len(found := [e for e in self.events if isinstance(e, kind)]) < count:
                await self.changed.wait()
        return found


@asynccontextmanager
async def mux_pair() -> AsyncIterator[tuple[MuxConnection, Recorder, MuxConnection, Recorder]]:
    a, b = memory_channel_pair()
    client_events, server_events = Recorder(), Recorder()
    client = MuxConnection(a, Role.CLIENT, client_events)
    server = MuxConnection(b, Role.SERVER, server_events)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        tg.start_soon(server.run)
        yield client, client_events, server, server_events
        tg.cancel_scope.cancel()


async def test_the_pump_carries_messages_both_ways() -> None:
    async with mux_pair() as (client, client_events, server, server_events):
        await client_events.until(HelloReceived)
        sid = client.core.open_stream({"jsonrpc": "2.0", "id": 1, "method": "ping"}, end=True)
        client.wake()
        (request,) = await server_events.until(MessageReceived)
        assert isinstance(request, MessageReceived)
        assert request.stream_id == sid
        server.core.send_message(sid, {"jsonrpc": "2.0", "id": 1, "result": {}}, end=True)
        server.wake()
        (response,) = await client_events.until(MessageReceived)
        assert isinstance(response, MessageReceived)
        assert response.message == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_a_graceful_close_ends_both_sides_with_no_error() -> None:
    async with mux_pair() as (client, client_events, _server, server_events):
        await client_events.until(HelloReceived)
        client.close()
        (mine,) = await client_events.until(ConnectionTerminated)
        (theirs,) = await server_events.until(ConnectionTerminated)
        assert isinstance(mine, ConnectionTerminated)
        assert isinstance(theirs, ConnectionTerminated)
        assert (mine.error_code, mine.close_code) == (ErrorCode.NO_ERROR, 1000)
        assert (theirs.error_code, theirs.close_code) == (ErrorCode.NO_ERROR, 1000)


async def test_a_dropped_channel_is_a_lost_connection_on_the_other_side() -> None:
    a, b = memory_channel_pair()
    events = Recorder()
    server = MuxConnection(b, Role.SERVER, events)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run)
        await a.aclose()
        (ended,) = await events.until(ConnectionTerminated)
        assert isinstance(ended, ConnectionTerminated)
        assert (ended.error_code, ended.close_code) == (ErrorCode.INTERNAL_ERROR, 1006)


async def test_a_call_through_the_sdk_with_no_socket() -> None:
    async with session_pair() as (session, _, _, _):
        result = await session.call_tool("add", {"a": 2, "b": 40})
        assert isinstance(result.content[0], TextContent)
        assert result.content[0].text == "42"


async def test_a_cancel_reaches_the_handler() -> None:
    probe = Probe()
    async with session_pair(probe) as (session, _, _, _):
        with anyio.move_on_after(0.3):
            await session.call_tool("sleepy", {"seconds": 30})
        with anyio.fail_after(5):
            await probe.cancelled.wait()
        assert not probe.finished.is_set()
        assert (await session.call_tool("add", {"a": 1, "b": 1})).content


async def test_a_stalled_reader_holds_the_producer_at_one_window() -> None:
    probe = Probe()
    async with session_pair(probe) as (session, _, _, _):
        async with mcp_ws.stream_tool(session, "bulk", {"chunks": 1000, "size": 16384}) as stream:
            assert isinstance(await stream.__anext__(), mcp_ws.Started)
            with anyio.fail_after(5):
                previous = -1
                while probe.sent != previous:  # until the producer stops on credit
                    previous = probe.sent
                    await anyio.sleep(0.05)
            assert 10 <= probe.sent <= 262144 // 16384 + 2
            assert (await session.call_tool("add", {"a": 1, "b": 2})).content  # others flow
            stream.cancel()


async def test_losing_the_channel_fails_the_call_and_cancels_the_handler() -> None:
    probe = Probe()
    async with session_pair(probe) as (session, _, a, _):
        async with anyio.create_task_group() as tg:

            async def drop_when_started() -> None:
                await probe.started.wait()
                await a.aclose()

            tg.start_soon(drop_when_started)
            with pytest.raises(MCPError) as caught:
                await session.call_tool("sleepy", {"seconds": 30})
        assert caught.value.error.code == CONNECTION_CLOSED
        with anyio.fail_after(5):
            await probe.cancelled.wait()


async def test_a_quiet_client_still_says_hello_and_is_not_dropped() -> None:
    """HELLO goes out when the pump starts, not with the first request: a client that
    connects and waits is not taken for a peer that never said HELLO."""
    a, b = memory_channel_pair()
    server_events = Recorder()
    client = MuxConnection(a, Role.CLIENT, Recorder())
    server = MuxConnection(b, Role.SERVER, server_events, limits=mcp_ws.Limits(hello_timeout=0.5))
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        tg.start_soon(server.run)
        await server_events.until(HelloReceived)
        await anyio.sleep(0.7)  # past the server's HELLO timeout
        assert not [e for e in server_events.events if isinstance(e, ConnectionTerminated)]
        tg.cancel_scope.cancel()


async def test_credit_wakes_only_the_producer_of_that_stream() -> None:
    async with mux_pair() as (client, client_events, server, server_events):
        await client_events.until(HelloReceived)
        first = client.open_stream({"jsonrpc": "2.0", "id": 1, "method": "a"}, end=True)
        second = client.open_stream({"jsonrpc": "2.0", "id": 2, "method": "b"}, end=True)
        await server_events.until(MessageReceived, 2)
        note = {"jsonrpc": "2.0", "method": "n", "params": {"blob": "y" * 16000}}
        for sid in (first, second):  # fill both windows; the client reads nothing yet
            while server.credit(sid) > 0:
                server.send(sid, note)
        woken: list[int] = []

        async def produce(sid: int) -> None:
            await server.wait_credit(sid)
            woken.append(sid)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, first)
            tg.start_soon(produce, second)
            received = await client_events.until(MessageReceived, 2 * 16)
            for event in received:  # the client reads the first stream only
                assert isinstance(event, MessageReceived)
                if event.stream_id == first:
                    client.acknowledge(first, event.flow_controlled_length)
            with anyio.fail_after(5):
                while not woken:
                    await anyio.sleep(0.01)
            await anyio.sleep(0.1)
            assert woken == [first]  # the second stream's producer still waits
            for event in received:
                assert isinstance(event, MessageReceived)
                if event.stream_id == second:
                    client.acknowledge(second, event.flow_controlled_length)
            with anyio.fail_after(5):
                while len(woken) < 2:
                    await anyio.sleep(0.01)
        assert woken == [first, second]


class CountingChannel:
    """A `MemoryChannel` that can send without waiting, and counts which path it took."""

    def __init__(self, channel: MemoryChannel, *, ready: bool) -> None:
        self._channel = channel
        self.subprotocol = channel.subprotocol
        self.ready = ready
        self.waited: list[int] = []  # messages per send (the writer task)
        self.direct: list[int] = []  # messages per send_now (the caller's task)

    @property
    def close_code(self) -> int | None:
        return self._channel.close_code

    @property
    def can_send_now(self) -> bool:
        return self.ready

    def send_now(self, messages: Sequence[bytes | str]) -> None:
        self.direct.append(len(messages))
        for message in messages:
            self._channel._out.send_nowait(message)

    async def send(self, messages: Sequence[bytes | str]) -> None:
        self.waited.append(len(messages))
        await self._channel.send(messages)

    async def receive(self) -> bytes | str | None:
        return await self._channel.receive()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._channel.close(code, reason)

    async def aclose(self) -> None:
        await self._channel.aclose()


@asynccontextmanager
async def counted_session(*, ready: bool) -> AsyncIterator[tuple[ClientSession, CountingChannel]]:
    channels: list[CountingChannel] = []

    def counting(channel: MemoryChannel) -> CountingChannel:
        channels.append(CountingChannel(channel, ready=ready))
        return channels[0]

    async with session_pair(buffer=1024, wrap=counting) as (session, _, _, _):
        yield session, channels[0]


async def test_a_lone_request_is_written_by_its_caller_and_a_crowd_by_the_writer() -> None:
    async with counted_session(ready=True) as (session, channel):
        await session.call_tool("add", {"a": 0, "b": 0})  # the SDK lists the tools first
        channel.direct.clear()
        channel.waited.clear()
        assert (await session.call_tool("add", {"a": 1, "b": 2})).content
        assert channel.direct == [1]  # the request, in the caller's task
        assert channel.waited == []  # the writer task had nothing to do
        channel.direct.clear()
        channel.waited.clear()
        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(session.call_tool, "add", {"a": i, "b": 1})
        assert len(channel.direct) <= 1  # only a call that found itself alone
        # The rest went out through the writer, coalesced: fewer WebSocket messages
        # than requests.
        assert channel.waited
        assert sum(channel.waited) + sum(channel.direct) < 16


async def test_a_channel_that_cannot_send_now_leaves_every_write_to_the_writer() -> None:
    async with counted_session(ready=False) as (session, channel):
        assert (await session.call_tool("add", {"a": 1, "b": 2})).content
        assert channel.direct == []
        assert channel.waited


# ------------------------------------------------------------------ the SDK's inbox


class AckRecorder:
    """Stands in for a bridge: records the credit an `Inbox` gives back."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []

    def _acknowledge(self, sid: int, size: int) -> None:
        self.acks.append((sid, size))


def _message(n: int) -> SessionMessage:
    note = JSONRPCNotification(jsonrpc="2.0", method=f"n/{n}")
    return SessionMessage(message=note)


async def test_the_inbox_wakes_a_waiting_reader_and_acknowledges_on_taking() -> None:
    inbox, bridge = Inbox(), AckRecorder()
    got: list[object] = []

    async def read() -> None:
        got.append(await inbox.get())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            first = _message(1)
            inbox.put(first, bridge, 3, 40)  # type: ignore[arg-type]
            assert bridge.acks == []  # credit goes back when the SDK takes it
    assert got == [first]
    assert bridge.acks == [(3, 40)]


async def test_the_inbox_drains_after_end_and_gives_credit_back_on_close() -> None:
    inbox, bridge = Inbox(), AckRecorder()
    for n in range(3):
        inbox.put(_message(n), bridge, n + 1, 10)  # type: ignore[arg-type]
    inbox.end()
    inbox.put(_message(9), bridge, 9, 90)  # type: ignore[arg-type]
    assert bridge.acks == [(9, 90)]  # after the end: dropped, its credit back at once
    first = await inbox.get()
    assert isinstance(first, SessionMessage)
    assert first.message.method == "n/0"  # type: ignore[union-attr]
    inbox.close()  # the other two are dropped, and their credit given back
    assert bridge.acks == [(9, 90), (1, 10), (2, 10), (3, 10)]
    with pytest.raises(anyio.ClosedResourceError):
        await inbox.get()
    ended = Inbox()
    ended.end()
    with pytest.raises(anyio.EndOfStream):
        await ended.get()


async def test_taking_a_waiting_message_is_still_a_cancellation_point() -> None:
    inbox, bridge = Inbox(), AckRecorder()
    inbox.put(_message(1), bridge, 1, 5)  # type: ignore[arg-type]
    with anyio.CancelScope() as scope:
        scope.cancel()
        await inbox.get()
    assert scope.cancelled_caught
    assert bridge.acks == []  # not taken
    assert isinstance(await inbox.get(), SessionMessage)
    assert bridge.acks == [(1, 5)]


async def test_a_cancelled_reader_leaves_the_inbox_to_the_others() -> None:
    """Two readers wait; one is cancelled; the other still gets the next message, and
    the cancelled one can wait again and get the one after."""
    inbox, bridge = Inbox(), AckRecorder()
    got: list[object] = []

    async def read() -> None:
        got.append(await inbox.get())

    doomed = anyio.CancelScope()

    async def read_until_cancelled() -> None:
        with doomed:
            await read()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_until_cancelled)
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            doomed.cancel()
            await anyio.wait_all_tasks_blocked()
            first = _message(1)
            inbox.put(first, bridge, 1, 1)  # type: ignore[arg-type]
        assert got == [first]
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            second = _message(2)
            inbox.put(second, bridge, 1, 1)  # type: ignore[arg-type]
    assert got == [first, second]


def test_messages_are_routed_by_kind_subclasses_included() -> None:
    """The bridge dispatches on a message's exact class, and falls back to isinstance
    for a subclass of one of the SDK's four JSON-RPC models."""
    from mcp_types import (
        JSONRPCError,
        JSONRPCMessage,
        JSONRPCNotification,
        JSONRPCRequest,
        JSONRPCResponse,
    )

    from mcp_ws.sdk import bridge

    class TaggedRequest(JSONRPCRequest):
        pass

    class TaggedNotification(JSONRPCNotification):
        pass

    error = {"code": -1, "message": "no"}
    cases: list[tuple[JSONRPCMessage, int]] = [
        (JSONRPCRequest(jsonrpc="2.0", id=1, method="m"), bridge._REQUEST),
        (TaggedRequest(jsonrpc="2.0", id=1, method="m"), bridge._REQUEST),
        (JSONRPCNotification(jsonrpc="2.0", method="n"), bridge._NOTIFICATION),
        (TaggedNotification(jsonrpc="2.0", method="n"), bridge._NOTIFICATION),
        (JSONRPCResponse(jsonrpc="2.0", id=1, result={}), bridge._ANSWER),
        (JSONRPCError.model_validate({"jsonrpc": "2.0", "id": 1, "error": error}), bridge._ANSWER),
    ]
    assert [bridge._kind(message) for message, _ in cases] == [kind for _, kind in cases]
