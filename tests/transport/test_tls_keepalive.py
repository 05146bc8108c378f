"""TLS (wss://) and keepalive / dead-peer detection over real loopback sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import trustme
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, TextContent

import mcp_ws
from mcp_ws.protocol import Connection, ErrorCode, Role, Settings
from mcp_ws.protocol.frames import Ping
from mcp_ws.transport import WebSocket

from ..livehelpers import RawPeer, live_server, raw_websocket_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority.configure_trust(context)
    return context


async def test_a_session_over_wss(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with anyio.fail_after(20):
        async with live_server(ssl=server_tls) as (server, _):
            assert server.url.startswith("wss://127.0.0.1:")
            async with mcp_ws.connect(server.url, ssl=client_tls) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    result = await session.call_tool("echo", {"text": "over tls"})
                    block = result.content[0]
                    assert isinstance(block, TextContent)
                    assert block.text == "over tls"


async def test_an_untrusted_certificate_is_refused_and_the_server_goes_on(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with anyio.fail_after(20):
        async with live_server(ssl=server_tls) as (server, _):
            stranger = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # no test CA
            with pytest.raises(ssl.SSLCertVerificationError):
                async with mcp_ws.connect(server.url, ssl=stranger):
                    pass  # pragma: no cover - the handshake fails first
            # plain ws:// against the TLS port does not get a session either
            with pytest.raises((mcp_ws.HandshakeError, OSError, anyio.BrokenResourceError)):
                async with mcp_ws.connect(
                    server.url.replace("wss://", "ws://"), handshake_timeout=3
                ):
                    pass  # pragma: no cover
            async with mcp_ws.connect(server.url, ssl=client_tls) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    assert (await session.list_tools()).tools


async def test_the_server_pings_an_idle_client_and_the_client_answers() -> None:
    with anyio.fail_after(20):
        async with live_server(settings=Settings(ping_interval=0.2)) as (server, _):
            async with RawPeer.connect(server.url) as peer:
                await peer.flush()

                # RawPeer answers PINGs as it reads, so the connection stays up.
                def pings() -> int:
                    return sum(isinstance(f, Ping) and not f.ack for f in peer.frames)

                await peer.until(lambda _: pings() >= 3, seconds=10)
                assert pings() >= 3
                assert peer.terminated() is None
                assert server.connection_count == 1


async def test_the_server_drops_a_client_that_went_silent() -> None:
    with anyio.fail_after(30):
        async with live_server(settings=Settings(ping_interval=0.2)) as (server, _):
            async with RawPeer.connect(server.url) as peer:
                await peer.flush()
                # Never read or answer: after 2 intervals + the grace the server gives up.
                with anyio.fail_after(15):
                    while server.connection_count:
                        await anyio.sleep(0.1)
                await peer.pump(seconds=5)
                ended = peer.terminated()
                assert ended is not None
                assert ended.error_code == ErrorCode.TIMEOUT
                assert any(isinstance(f, Ping) and not f.ack for f in peer.frames)


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A server that completes the handshake, says HELLO, then never reads or writes."""
    stop = anyio.Event()

    async def talk(ws: WebSocket) -> None:
        await ws.send(Connection(Role.SERVER).data_to_send())
        await stop.wait()

    async with raw_websocket_server(talk) as url:
        try:
            yield url
        finally:
            stop.set()


async def test_a_client_fails_its_calls_when_the_server_goes_silent() -> None:
    with anyio.fail_after(30):
        async with silent_server() as url:
            async with mcp_ws.connect(url, settings=Settings(ping_interval=0.2)) as (read, write):
                async with ClientSession(read, write) as session:
                    started = anyio.current_time()
                    with pytest.raises(MCPError) as caught:
                        await session.initialize()
                    assert caught.value.error.code == CONNECTION_CLOSED
                    # dead after 2 x interval + the 5 s grace, not before and not much later
                    assert 5.0 <= anyio.current_time() - started < 8.0
