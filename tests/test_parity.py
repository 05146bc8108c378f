"""Client parity: the rows of docs/parity.md that the Python client keeps, each also
tested in the TypeScript suite (js/test/parity.test.ts) with the same words."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

import mcp_ws
from mcp_ws.transport.tcp import create_tcp_listener

pytestmark = pytest.mark.anyio


async def test_a_server_that_never_answers_the_handshake_is_a_handshake_error() -> None:
    """TCP accepted, no HTTP answer: `HandshakeError` with the TypeScript client's words,
    not a bare TimeoutError, and nothing left running."""
    held: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            held.append(stream)
            await anyio.sleep_forever()

    listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    url = f"ws://127.0.0.1:{port}/mcp"
    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold, tg)
            with pytest.raises(mcp_ws.HandshakeError) as caught:
                async with mcp_ws.connect(url, handshake_timeout=0.3):
                    pytest.fail("connected to a server that never answered")
            assert str(caught.value) == f"no WebSocket handshake with {url} within 300 ms"
            assert caught.value.status is None
            assert len(held) == 1
            tg.cancel_scope.cancel()
