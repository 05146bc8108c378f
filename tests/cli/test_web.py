"""The chat page beside the WebSocket endpoint (``serving(web=True)``, ``--web``), on
asyncio and trio. The page itself is tested in Chromium by js/test/browser.test.ts."""

from __future__ import annotations

import anyio
import pytest

import mcp_ws
from mcp_ws.cli.demo_app import build_demo_app, chat_answer

from ..livehelpers import session_to

pytestmark = pytest.mark.anyio


async def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 GET over a raw loopback socket."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, port = host_port.rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(5):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_the_page_its_script_and_the_bundle_are_served_beside_the_endpoint() -> None:
    async with mcp_ws.serving(build_demo_app(), port=0, web=True, path="/chat-mcp") as server:
        assert server.page_url == f"http://127.0.0.1:{server.port}/"
        status, headers, body = await http_get(server.page_url)
        assert status == 200
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'<meta name="mcp-ws-path" content="/chat-mcp">' in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        status, headers, body = await http_get(server.page_url + "chat.js")
        assert (status, headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
        assert b'from "./mcp-ws-client.browser.js"' in body
        status, _, body = await http_get(server.page_url + "mcp-ws-client.browser.js")
        assert status == 200
        assert len(body) > 100_000
        assert (await http_get(server.page_url + "secrets"))[0] == 404
        # the WebSocket endpoint is unchanged
        async with session_to(server.url.replace("/mcp", "/chat-mcp")) as session:
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert tools["chat"].meta == mcp_ws.STREAMS
            assert tools["echo"].meta is None


async def test_without_web_there_is_no_page() -> None:
    async with mcp_ws.serving(build_demo_app(), port=0) as server:
        assert server.page_url is None
        assert (await http_get(f"http://127.0.0.1:{server.port}/"))[0] == 404


def test_the_demo_chat_answer_quotes_the_prompt() -> None:
    assert chat_answer("why stream?").startswith("You asked: why stream? Streaming over mcp-ws")
    assert chat_answer("  hello   there ").startswith("You asked: hello there. ")
    assert chat_answer("").startswith("You asked: nothing in particular. ")
