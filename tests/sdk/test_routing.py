"""What the binding puts on the wire: which stream each JSON-RPC message rides (both backends)."""

from __future__ import annotations

import anyio
import pytest

from mcp_ws.protocol import ErrorCode
from mcp_ws.protocol.events import MessageReceived, StreamCancelled, StreamEnded

from ..livehelpers import INITIALIZE, RawPeer, live_server, request

pytestmark = pytest.mark.anyio


async def initialized(peer: RawPeer) -> None:
    sid = peer.core.open_stream(INITIALIZE, end=True)
    await peer.flush()
    await peer.until(
        lambda evs: any(isinstance(e, StreamEnded) and e.stream_id == sid for e in evs)
    )
    peer.core.send_message(0, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    await peer.flush()


async def test_progress_and_result_ride_the_request_stream_then_end() -> None:
    async with live_server() as (server, _), RawPeer.connect(server.url) as peer:
        await initialized(peer)
        call = request(
            2,
            "tools/call",
            {"name": "progress", "arguments": {"steps": 5}, "_meta": {"progressToken": "p"}},
        )
        sid = peer.core.open_stream(call, end=True)
        await peer.flush()
        events = await peer.until(
            lambda evs: any(isinstance(e, StreamEnded) and e.stream_id == sid for e in evs)
        )
        on_stream = [
            e.message for e in events if isinstance(e, MessageReceived) and e.stream_id == sid
        ]
        assert [m.get("method") for m in on_stream] == ["notifications/progress"] * 5 + [None]
        assert [m["params"]["progress"] for m in on_stream[:5]] == [1, 2, 3, 4, 5]
        assert on_stream[-1]["id"] == 2
        assert "result" in on_stream[-1]
        assert sid % 2 == 1  # client streams are odd
        assert not any(
            isinstance(e, MessageReceived)
            and e.stream_id == 0
            and e.message.get("method") == "notifications/progress"
            for e in events
        )


async def test_a_cancel_frame_cancels_the_handler_and_nothing_more_arrives() -> None:
    async with live_server() as (server, probe), RawPeer.connect(server.url) as peer:
        await initialized(peer)
        sid = peer.core.open_stream(
            request(3, "tools/call", {"name": "sleepy", "arguments": {"seconds": 30}}), end=True
        )
        await peer.flush()
        with anyio.fail_after(5):
            await probe.started.wait()
        peer.core.cancel_stream(sid, ErrorCode.CANCELLED, "user pressed stop")
        await peer.flush()
        with anyio.fail_after(5):
            await probe.cancelled.wait()
        # a later call still works, and stream sid got nothing after the cancel
        sid2 = peer.core.open_stream(
            request(4, "tools/call", {"name": "echo", "arguments": {"text": "x"}}), end=True
        )
        await peer.flush()
        events = await peer.until(
            lambda evs: any(isinstance(e, StreamEnded) and e.stream_id == sid2 for e in evs)
        )
        assert not any(
            isinstance(e, MessageReceived | StreamCancelled) and e.stream_id == sid for e in events
        )
        assert not probe.finished.is_set()


async def test_a_reused_request_id_in_flight_is_a_stream_protocol_error() -> None:
    async with live_server() as (server, _probe), RawPeer.connect(server.url) as peer:
        await initialized(peer)
        call = request(7, "tools/call", {"name": "sleepy", "arguments": {"seconds": 30}})
        peer.core.open_stream(call, end=True)
        second = peer.core.open_stream(call, end=True)
        await peer.flush()
        events = await peer.until(lambda evs: any(isinstance(e, StreamCancelled) for e in evs))
        cancelled = [e for e in events if isinstance(e, StreamCancelled)]
        assert [(e.stream_id, e.error_code, e.remote) for e in cancelled] == [
            (second, ErrorCode.PROTOCOL_ERROR, True)
        ]
