"""The MCPServer the binding tests run against (tools, resources, prompts, back-calls)."""

from __future__ import annotations

import sys
import warnings

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent
from pydantic import BaseModel


class Probe:
    """What the server-side handlers saw, for the tests to assert on."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()
        self.finished = anyio.Event()


def build_app(probe: Probe | None = None) -> MCPServer:
    probe = probe or Probe()
    app = MCPServer("mcp-ws-test", instructions="test server")

    @app.tool()
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    @app.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @app.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Report ``steps`` progress notifications, then return."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        return f"{steps} steps"

    @app.tool()
    async def sleepy(seconds: float) -> str:
        """Sleep, recording start, cancellation and completion in the probe."""
        probe.started.set()
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            probe.cancelled.set()
            raise
        probe.finished.set()
        return "rested"

    @app.tool()
    async def big(size: int) -> str:
        """Return ``size`` characters of text."""
        return "x" * size

    @app.tool()
    async def ask_model(question: str, ctx: Context) -> str:
        """Sampling from inside a tool."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = await ctx.session.create_message(
                [SamplingMessage(role="user", content=TextContent(type="text", text=question))],
                max_tokens=10,
                related_request_id=ctx.request_id,
            )
        assert isinstance(result.content, TextContent)
        return result.content.text

    class Answer(BaseModel):
        name: str

    @app.tool()
    async def ask_user(ctx: Context) -> str:
        """Elicitation from inside a tool."""
        answer = await ctx.elicit("your name?", Answer)
        return f"{answer.action}:{answer.data.name if answer.data else ''}"

    @app.tool()
    async def roots(ctx: Context) -> str:
        """roots/list from inside a tool."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = await ctx.session.list_roots()
        return ",".join(str(root.uri) for root in result.roots)

    @app.resource("test://greeting")
    def greeting() -> str:
        """A static resource."""
        return "hello from a resource"

    @app.prompt()
    def review(code: str) -> str:
        """A prompt with one argument."""
        return f"Please review: {code}"

    return app


async def _main() -> None:
    """Serve the app on a free port and print its URL (for subprocess tests)."""
    import mcp_ws

    async with mcp_ws.serving(build_app(), port=0) as server:
        print(server.url, flush=True)
        await anyio.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 60)


if __name__ == "__main__":
    anyio.run(_main, backend=sys.argv[2] if len(sys.argv) > 2 else "asyncio")
