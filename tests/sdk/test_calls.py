"""The table of calls and the one meeting point between a call and its route
(`mcp_ws.sdk.calls`), on their own and under the SDK over memory channels."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

import mcp_ws
from mcp_ws.protocol import Role
from mcp_ws.sdk.bridge import SessionBridge
from mcp_ws.sdk.calls import Call, CallTable, claim_route, handling, handling_bridge, routing
from mcp_ws.sdk.stream_tool import _fallback_routes, _PartialResultParams

from ..apps import Probe
from ..livehelpers import memory_session

pytestmark = pytest.mark.timeout(30)


class FakeRoute:
    def __init__(self, method: str) -> None:
        self.method = method
        self.acknowledge: Callable[[int], None] | None = None
        self.taken: list[tuple[Mapping[str, Any], int]] = []

    def claims(self, method: str, params: Mapping[str, Any] | None) -> bool:
        return method == self.method

    def attach(self, acknowledge: Callable[[int], None]) -> None:
        self.acknowledge = acknowledge

    def take(self, message: Mapping[str, Any], size: int) -> bool:
        self.taken.append((message, size))
        return True


# ---------------------------------------------------------------------- the table


def test_own_and_peer_request_ids_are_separate_name_spaces() -> None:
    table = CallTable()
    mine = table.add(Call(1, 1, ours=True))
    theirs = table.add(Call(1, 2, ours=False))
    assert table.own(1) is mine
    assert table.peer(1) is theirs
    assert table.on_stream(1) is mine
    assert table.on_stream(2) is theirs
    assert len(table) == 2


def test_a_request_id_or_stream_in_use_is_refused() -> None:
    table = CallTable()
    table.add(Call("a", 1, ours=True))
    with pytest.raises(ValueError, match="in use"):
        table.add(Call("a", 3, ours=True))
    with pytest.raises(ValueError, match="in use"):
        table.add(Call("b", 1, ours=False))
    assert len(table) == 1


def test_remove_forgets_both_directions_and_is_idempotent() -> None:
    table = CallTable()
    call = table.add(Call(7, 5, ours=True))
    table.remove(call)
    table.remove(call)
    assert table.own(7) is None
    assert table.on_stream(5) is None
    assert len(table) == 0
    again = table.add(Call(7, 9, ours=True))  # the id is free again
    table.remove(call)  # a stale record does not remove its successor
    assert table.own(7) is again


def test_lookups_of_ids_that_cannot_be_request_ids_find_nothing() -> None:
    table = CallTable()
    table.add(Call(1, 1, ours=True))
    assert table.own(None) is None
    assert table.own(1.0) is None
    assert table.peer([1]) is None


def test_clear_returns_every_call_own_first() -> None:
    table = CallTable()
    theirs = table.add(Call(1, 2, ours=False))
    mine = table.add(Call(1, 1, ours=True))
    assert table.clear() == [mine, theirs]
    assert len(table) == 0
    assert list(table) == []


def test_a_cancel_is_remembered_until_asked_once() -> None:
    table = CallTable()
    table.note_cancelled(4)
    assert table.cancelled(4)
    assert not table.cancelled(4)
    assert not table.cancelled(5)


# ---------------------------------------------------------------------- the meeting point


def test_no_route_is_offered_outside_routing() -> None:
    assert claim_route("tools/call", None) is None


def test_a_route_is_claimed_only_by_the_request_it_recognises() -> None:
    route = FakeRoute("tools/call")
    with routing(route):
        assert claim_route("tools/list", None) is None
        assert claim_route("tools/call", {}) is route
    assert claim_route("tools/call", {}) is None  # reset on the way out


@pytest.mark.anyio
async def test_concurrent_tasks_each_see_their_own_route() -> None:
    seen: dict[str, object] = {}

    async def call(name: str, route: FakeRoute) -> None:
        with routing(route):
            await anyio.sleep(0.01)  # the other task runs in between
            seen[name] = claim_route("tools/call", None)

    first, second = FakeRoute("tools/call"), FakeRoute("tools/call")
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "first", first)
        tg.start_soon(call, "second", second)
    assert seen == {"first": first, "second": second}


@pytest.mark.anyio
async def test_handlers_started_inside_handling_reach_their_sessions_bridge() -> None:
    first, second = SessionBridge(Role.SERVER), SessionBridge(Role.SERVER)
    seen: list[object] = []

    async def handler() -> None:
        await anyio.sleep(0.01)
        seen.append(handling_bridge())

    async def session(bridge: SessionBridge) -> None:
        with handling(bridge):
            async with anyio.create_task_group() as tg:  # the SDK starts handlers so
                tg.start_soon(handler)

    async with anyio.create_task_group() as tg:
        tg.start_soon(session, first)
        tg.start_soon(session, second)
    assert sorted(map(id, seen)) == sorted([id(first), id(second)])
    assert handling_bridge() is None
    for bridge in (first, second):
        bridge.close()


# ---------------------------------------------------------------------- under the SDK


@pytest.mark.anyio
async def test_a_streaming_call_is_its_own_route_in_the_bridge_table() -> None:
    async with memory_session() as (session, bridge, _, _):
        assert len(bridge.calls) == 0
        async with mcp_ws.stream_tool(session, "generate", {"count": 3, "pause": 0.2}) as stream:
            assert isinstance(await stream.__anext__(), mcp_ws.Started)
            (call,) = list(bridge.calls)
            assert call.ours
            assert call.route is stream
            assert stream.direct
            events = [event async for event in stream]
        assert [type(e).__name__ for e in events] == ["Delta"] * 3 + ["Completed"]
        assert len(bridge.calls) == 0


@pytest.mark.anyio
async def test_a_plain_call_made_inside_routing_is_not_claimed() -> None:
    """The SDK may send other requests from the caller's context (a tools/list for an
    output schema, say): only the request carrying the stream's token is claimed."""
    async with memory_session() as (session, bridge, _, _):
        async with mcp_ws.stream_tool(session, "generate", {"count": 1}) as stream:
            with routing(stream):
                result = await session.call_tool("add", {"a": 1, "b": 2})
            assert not result.is_error
            assert [e async for e in stream][-1] == mcp_ws.Completed(result=stream.result)
        assert len(bridge.calls) == 0


@pytest.mark.anyio
async def test_calls_are_forgotten_when_the_connection_is_lost() -> None:
    probe = Probe()
    async with memory_session(probe) as (session, bridge, client_channel, _):

        async def call() -> None:
            with pytest.raises(MCPError) as caught:
                await session.call_tool("sleepy", {"seconds": 30})
            assert caught.value.error.code == CONNECTION_CLOSED

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            with anyio.fail_after(5):
                await probe.started.wait()
            assert len(bridge.calls) == 1
            await client_channel.aclose()
        assert len(bridge.calls) == 0


class FakeSession:
    """What a stream reads of a session to find the binding's routes."""

    def __init__(self, *bindings: Any) -> None:
        self._notification_bindings = {b.method: b for b in bindings}


def test_a_stream_finds_the_routes_of_its_own_sessions_binding() -> None:
    first, second = mcp_ws.partial_result_binding(), mcp_ws.partial_result_binding()
    assert _fallback_routes(FakeSession(first)) is first.handler.__self__  # type: ignore[attr-defined]
    assert _fallback_routes(FakeSession(second)) is second.handler.__self__  # type: ignore[attr-defined]
    assert _fallback_routes(FakeSession(first)) is not _fallback_routes(FakeSession(second))
    assert _fallback_routes(FakeSession()) is None
    assert _fallback_routes(object()) is None


@pytest.mark.anyio
async def test_a_binding_delivers_by_token_while_the_stream_is_open() -> None:
    binding = mcp_ws.partial_result_binding()
    routes = binding.handler.__self__  # type: ignore[attr-defined]
    stream = mcp_ws.ToolStream(FakeSession(binding), "t", None, read_timeout=None, meta=None)
    received: list[Any] = []
    stream.deliver = lambda params, size=0: received.append(params)  # type: ignore[method-assign]
    routes.add(stream)
    params = _PartialResultParams(partialResultToken=stream.token, seq=0, event="start")
    await binding.handler(params)
    await binding.handler(_PartialResultParams(partialResultToken="other", seq=0, event="start"))
    routes.discard(stream)
    await binding.handler(params)
    assert received == [{"partialResultToken": stream.token, "seq": 0, "event": "start"}]
    assert len(routes) == 0
