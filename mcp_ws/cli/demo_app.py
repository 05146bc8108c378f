"""The demo's MCP server: the same app over mcp-ws (in process) and stdio (`serve_stdio`)."""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult

from ..sdk.partial import advertise_streaming, partial_results
from ..sdk.server import serving
from ..sdk.streaming import STREAMS

__all__ = [
    "ANSWER",
    "STDIO_COMMAND",
    "WS_COMMAND",
    "DemoProbe",
    "build_demo_app",
    "chat_answer",
    "serve_stdio",
    "serve_ws",
]

ANSWER = (
    "Streaming over mcp-ws: each token of this answer is a partial result on the call's "
    "own stream, sent the moment it is produced, with flow control, while other calls "
    "share the same connection."
)


def chat_answer(prompt: str) -> str:
    """The demo's canned answer to ``prompt``."""
    asked = " ".join(prompt.split()) or "nothing in particular"
    if asked[-1] not in ".?!":
        asked += "."
    return (
        f"You asked: {asked} " + ANSWER + " Press Stop (or Escape) at any moment: the "
        "server's handler is cancelled at once, and the tokens already shown stay on the page."
    )


class DemoProbe:
    """What the demo's server saw: how far the last paced stream got, and whether it was
    cancelled."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = anyio.Event()

    async def paced(
        self, ctx: Context, pieces: list[str], pace: float, meta: dict[str, str] | None = None
    ) -> CallToolResult:
        """Stream ``pieces`` ``pace`` seconds apart, counting them and noting a cancel."""
        self.sent = 0
        self.cancelled = anyio.Event()
        try:
            async with partial_results(ctx, meta=meta) as out:
                for piece in pieces:
                    await out.send_text(piece)
                    self.sent += 1
                    await anyio.sleep(pace)
        except BaseException:
            self.cancelled.set()
            raise
        return out.result()


def build_demo_app(probe: DemoProbe | None = None) -> MCPServer:
    """The demo server: ``chat``, ``answer``, ``count`` and ``stream`` stream their
    output (marked with `STREAMS` for the chat page); ``echo`` and ``progress`` do not."""
    probe = probe or DemoProbe()
    app = MCPServer("mcp-ws demo", log_level="WARNING")

    @app.tool(meta=STREAMS)
    async def chat(prompt: str, ctx: Context, pace: float = 0.03) -> CallToolResult:
        """Answer ``prompt`` token by token, as a model would (a canned answer that
        quotes the prompt; ``pace`` seconds between tokens)."""
        words = [word + " " for word in chat_answer(prompt).split(" ")]
        return await probe.paced(ctx, words, pace, meta={"model": "canned"})

    @app.tool()
    def progress() -> dict[str, int | bool]:
        """How far the last chat or count got, and whether it was cancelled."""
        return {"sent": probe.sent, "cancelled": probe.cancelled.is_set()}

    @app.tool(meta=STREAMS)
    async def answer(ctx: Context, pace: float = 0.02) -> CallToolResult:
        """Stream a canned answer token by token (``pace`` seconds apart)."""
        async with partial_results(ctx, meta={"model": "canned"}) as out:
            for word in ANSWER.split(" "):
                await out.send_text(word + " ")
                await anyio.sleep(pace)
        return out.result()

    @app.tool(meta=STREAMS)
    async def count(to: int, ctx: Context, pause: float = 0.05) -> CallToolResult:
        """Stream the numbers 1..to, ``pause`` seconds apart."""
        return await probe.paced(ctx, [f"{i} " for i in range(1, to + 1)], pause)

    @app.tool(meta=STREAMS)
    async def stream(deltas: int, ctx: Context) -> CallToolResult:
        """Stream ``deltas`` short text deltas as fast as the reader takes them."""
        probe.sent = 0
        async with partial_results(ctx) as out:
            for i in range(deltas):
                await out.send_text(f"{i % 10}")
                probe.sent += 1
        return out.result()

    @app.tool()
    def echo(text: str) -> str:
        """Return ``text``."""
        return text

    return app


STDIO_COMMAND = ("-c", "from mcp_ws.cli.demo_app import serve_stdio; serve_stdio()")
"""Arguments for ``sys.executable`` that serve the demo app over stdio."""


WS_COMMAND = ("-c", "from mcp_ws.cli.demo_app import serve_ws; serve_ws()")
"""Arguments for ``sys.executable`` that serve the demo app over mcp-ws on a free port,
print the URL, and stop when stdin closes."""


def serve_ws() -> None:
    """Serve the demo app over mcp-ws in this process until stdin closes."""

    async def main() -> None:
        async with serving(build_demo_app(), port=0) as server:
            print(server.url, flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)

    anyio.run(main)


def serve_stdio() -> None:
    """Serve the demo app over the SDK's stdio transport (for the side-by-side timing)."""
    stdio_app = build_demo_app()
    advertise_streaming(stdio_app)
    stdio_app.run("stdio")
