"""Handshake security and bad peers against a live server: each gets the documented
error, and the server keeps serving everyone else. Both backends."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, TextContent

import mcp_ws
from mcp_ws.protocol import Connection, ErrorCode, Limits, Role, Settings
from mcp_ws.protocol.frames import (
    Cancel,
    Credit,
    GoAway,
    Hello,
    Open,
    Ping,
    decode_message,
    encode_frame,
)
from mcp_ws.protocol.message import encode_payload
from mcp_ws.transport import WebSocket, open_websocket

from ..livehelpers import (
    INITIALIZE,
    RawPeer,
    live_server,
    raw_websocket_server,
    request,
    session_to,
)

pytestmark = pytest.mark.anyio


async def assert_still_serving(url: str) -> None:
    async with session_to(url) as s:
        result = await s.call_tool("echo", {"text": "ok"})
        block = result.content[0]
        assert isinstance(block, TextContent)
        assert block.text == "ok"


# ------------------------------------------------------------------ handshake


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1", True),
        ("https://[::1]:8443", True),
        ("http://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
    ],
)
async def test_origin_allow_list_defaults_to_loopback(origin: str, allowed: bool) -> None:
    async with live_server() as (server, _):
        if allowed:
            async with mcp_ws.connect(server.url, headers={"Origin": origin}):
                pass
        else:
            with pytest.raises(mcp_ws.HandshakeError) as caught:
                async with mcp_ws.connect(server.url, headers={"Origin": origin}):
                    pass
            assert caught.value.status == 403
        await assert_still_serving(server.url)


async def test_custom_origin_list_replaces_the_default() -> None:
    async with live_server(allowed_origins=["https://app.example.com"]) as (server, _):
        async with mcp_ws.connect(server.url, headers={"Origin": "https://app.example.com"}):
            pass
        with pytest.raises(mcp_ws.HandshakeError) as caught:
            async with mcp_ws.connect(server.url, headers={"Origin": "http://localhost"}):
                pass
        assert caught.value.status == 403


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_missing_or_wrong_token_is_401(token: str | None) -> None:
    async with live_server(auth=mcp_ws.bearer_token("s3cret")) as (server, _):
        with pytest.raises(mcp_ws.HandshakeError) as caught:
            async with mcp_ws.connect(server.url, token=token):
                pass
        assert caught.value.status == 401
        async with mcp_ws.connect(server.url, token="s3cret") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()


async def test_bearer_subprotocol_is_accepted_and_never_echoed() -> None:
    async with live_server(auth=mcp_ws.bearer_token("s3cret")) as (server, _):
        ws = await open_websocket(
            server.url, subprotocols=["mcp-ws.v1", "mcp-ws.bearer.s3cret"], max_size=None
        )
        try:
            assert ws.subprotocol == "mcp-ws.v1"
        finally:
            await ws.aclose()
        with pytest.raises(mcp_ws.HandshakeError) as caught:
            await open_websocket(
                server.url, subprotocols=["mcp-ws.v1", "mcp-ws.bearer.nope"], max_size=None
            )
        assert caught.value.status == 401


async def test_async_authenticator_and_wrong_path() -> None:
    seen: list[str | None] = []

    async def auth(token: str | None) -> bool:
        seen.append(token)
        await anyio.lowlevel.checkpoint()
        return token == "t"

    async with live_server(auth=auth) as (server, _):
        async with mcp_ws.connect(server.url, token="t"):
            pass
        with pytest.raises(mcp_ws.HandshakeError) as caught:
            async with mcp_ws.connect(server.url.replace("/mcp", "/other"), token="t"):
                pass
        assert caught.value.status == 404
    assert seen == ["t"]


async def test_no_known_subprotocol_is_400() -> None:
    async with live_server() as (server, _):
        with pytest.raises(mcp_ws.HandshakeError) as caught:
            await open_websocket(server.url, subprotocols=["graphql-ws"], max_size=None)
        assert caught.value.status == 400


# ------------------------------------------------------------------ bad peers


def opened(sid: int, rid: int, method: str = "ping") -> bytes:
    return encode_frame(Open(stream_id=sid, payload=encode_payload(request(rid, method))))


async def test_json_text_client_with_raw_websocket() -> None:
    async with live_server() as (server, _):
        ws = await open_websocket(server.url, subprotocols=["mcp"], max_size=None)
        try:
            assert ws.subprotocol == "mcp"
            await ws.send([json.dumps(INITIALIZE)])
            answer = await ws.receive()
            assert isinstance(answer, str)
            reply = json.loads(answer)
            assert reply["id"] == 1
            assert reply["result"]["serverInfo"]["name"] == "mcp-ws-test"
        finally:
            await ws.aclose()


def open_and_cancel(sids: range) -> bytes:
    """Streams opened and at once cancelled by their opener: the rapid-reset pattern."""
    return b"".join(
        opened(sid, sid) + encode_frame(Cancel(stream_id=sid, error_code=7)) for sid in sids
    )


CASES: dict[str, tuple[Any, ErrorCode | None, int]] = {
    # name: (what the peer sends after its HELLO, GOAWAY code expected, close code)
    "text frame": (["hello"], None, 1003),
    "garbage bytes": ([b"\xc1\xc1\xc1"], ErrorCode.PROTOCOL_ERROR, 1002),
    "second HELLO": (
        [encode_frame(Hello(settings={"version": 1}))],
        ErrorCode.PROTOCOL_ERROR,
        1002,
    ),
    "oversized frame": ([b"\x00" * (65536 + 2048)], ErrorCode.FRAME_SIZE_ERROR, 1009),
    "credit overflow": (
        [encode_frame(Credit(stream_id=0, increment=2**31 - 1))],
        ErrorCode.FLOW_CONTROL_ERROR,
        1002,
    ),
    "ping flood": (
        [b"".join(encode_frame(Ping(opaque=i)) for i in range(200))],
        ErrorCode.ENHANCE_YOUR_CALM,
        1008,
    ),
    "open/cancel flood": (
        [open_and_cancel(range(1, 801, 2)), open_and_cancel(range(801, 1601, 2))],
        ErrorCode.ENHANCE_YOUR_CALM,
        1008,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_peer_gets_the_documented_error(case: str) -> None:
    messages, code, close = CASES[case]
    async with live_server() as (server, _):
        async with RawPeer.connect(server.url) as peer:
            await peer.flush()
            await peer.send_raw(*messages)
            assert await peer.pump() == close
            ended = peer.terminated()
            if code is None:
                assert ended is None  # 1003 needs no GOAWAY
            else:
                assert ended is not None
                assert ended.remote
                assert ended.error_code is code
        await assert_still_serving(server.url)


async def test_no_hello_times_out() -> None:
    async with live_server(limits=Limits(hello_timeout=0.3)) as (server, _):
        async with RawPeer.connect(server.url, hello=False) as peer:
            assert await peer.pump() == 1008
            ended = peer.terminated()
            assert ended is not None
            assert ended.error_code is ErrorCode.TIMEOUT
        await assert_still_serving(server.url)


async def test_streams_past_max_streams_are_refused() -> None:
    settings = Settings(max_streams=4, max_message_size=2**20)
    async with live_server(settings=settings) as (server, _):
        ws = await open_websocket(server.url, subprotocols=["mcp-ws.v1"], max_size=None)
        try:
            sleepy = request(0, "tools/call", {"name": "sleepy", "arguments": {"seconds": 5}})
            burst = encode_frame(Hello(settings={"version": 1})) + b"".join(
                encode_frame(Open(stream_id=sid, payload=encode_payload({**sleepy, "id": sid})))
                for sid in (1, 3, 5, 7, 9)
            )
            await ws.send([burst])
            cancels: list[Cancel] = []
            with anyio.fail_after(5):
                while not cancels:
                    message = await ws.receive()
                    assert isinstance(message, bytes)
                    frames = decode_message(message, max_frame_size=2**20)
                    cancels += [f for f in frames if isinstance(f, Cancel)]
            assert [(c.stream_id, c.error_code) for c in cancels] == [(9, ErrorCode.REFUSED_STREAM)]
        finally:
            await ws.aclose()
        await assert_still_serving(server.url)


async def test_a_peer_that_never_reads_leaves_server_memory_bounded() -> None:
    budget = 1024 * 1024
    result = 1024 * 1024  # characters; the response carries them twice (text + structured)
    async with live_server(send_budget=budget) as (server, _):
        async with RawPeer.connect(server.url) as peer:
            calls = [
                request(100 + i, "tools/call", {"name": "big", "arguments": {"size": result}})
                for i in range(40)
            ]
            peer.core.open_stream(INITIALIZE, end=True)
            await peer.flush()
            for call in calls:
                if peer.core.can_open_stream:
                    peer.core.open_stream(call, end=True)
            await peer.flush()
            # The peer reads nothing more; the server produces until its budget is full.
            peak = 0
            with anyio.move_on_after(2):
                while True:
                    peak = max(peak, server.queued_bytes)
                    await anyio.sleep(0.05)
            assert peak > budget  # the server really did produce past what the peer read
            # at most the budget plus one message (admitted when under budget) plus slack
            assert peak <= budget + 2 * result + 64 * 1024
            await assert_still_serving(server.url)


# ------------------------------------------------------------------ close reasons

HOSTILE_REASON = "é" * 250  # 500 bytes of UTF-8: far more than a close frame holds


@asynccontextmanager
async def goaway_server(seen: dict[str, Any]) -> AsyncIterator[str]:
    """A server that says HELLO, then GOAWAY(PROTOCOL_ERROR, HOSTILE_REASON), and
    records the close frame the client answers with."""

    async def talk(ws: WebSocket) -> None:
        await ws.send(Connection(Role.SERVER).data_to_send())
        await ws.send([encode_frame(GoAway(last_stream_id=0, error_code=1, reason=HOSTILE_REASON))])
        with anyio.move_on_after(5):
            while await ws.receive() is not None:
                pass
        seen["code"], seen["reason"] = ws.close_code, ws.close_reason

    async with raw_websocket_server(talk) as url:
        yield url


async def test_a_server_goaway_with_a_huge_reason_ends_the_client_cleanly() -> None:
    seen: dict[str, Any] = {}
    with anyio.fail_after(15):
        async with goaway_server(seen) as url:
            async with mcp_ws.connect(url) as (read, write), ClientSession(read, write) as session:
                with pytest.raises(MCPError) as caught:
                    await session.initialize()
            # the documented error, and nothing else escapes the blocks
            assert caught.value.error.code == CONNECTION_CLOSED
            while "code" not in seen:
                await anyio.sleep(0.01)
    # the client answered with a close frame, its reason cut to fit by UTF-8 bytes
    assert seen["code"] == 1002
    assert seen["reason"] == "é" * 61
    assert len(seen["reason"].encode()) <= 123


async def test_a_client_goaway_with_a_huge_reason_gets_a_close_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with live_server() as (server, _):
        async with RawPeer.connect(server.url) as peer:
            await peer.flush()
            await peer.send_raw(
                encode_frame(GoAway(last_stream_id=0, error_code=1, reason=HOSTILE_REASON))
            )
            assert await peer.pump() == 1002
            assert peer.ws.close_reason == "é" * 61
        await assert_still_serving(server.url)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# ------------------------------------------------------------------ close reporting


async def test_a_clean_close_is_reported_as_no_error_on_both_sides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that connects and leaves without an MCP message (HELLO, GOAWAY, close
    1000) ended a clean wire, whichever side's task sees the end first."""
    caplog.set_level(logging.DEBUG, logger="mcp_ws.transport")
    async with live_server() as (server, _):
        for _ in range(10):
            async with mcp_ws.connect(server.url):
                pass
        with anyio.fail_after(5):
            while server.connection_count:
                await anyio.sleep(0.01)
    ended = [r for r in caplog.records if r.getMessage().startswith("connection terminated")]
    assert len(ended) == 20  # both sides of every connection
    assert all("NO_ERROR" in r.getMessage() and "close_code=1000" in r.getMessage() for r in ended)
    assert all(r.levelno == logging.DEBUG for r in ended)
