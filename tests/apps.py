"""The MCPServer the binding tests run against (tools, resources, prompts, back-calls)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any

import anyio
import sniffio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, SamplingMessage, TextContent
from pydantic import BaseModel

import mcp_ws
from mcp_ws.protocol import ErrorCode
from mcp_ws.sdk.calls import handling_bridge
from mcp_ws.transport.resume import ResumeLimits


class Probe:
    """What the server-side handlers saw, for the tests to assert on."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()
        self.finished = anyio.Event()
        self.sent = 0  # partial results a streaming tool got through
        self.send_error: BaseException | None = None
        self.stream_started = anyio.Event()
        self.stream_cancelled = anyio.Event()
        self.runs: dict[str, int] = {}  # times each `tagged` call ran, by tag


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
        name = answer.data.name if answer.action == "accept" and answer.data else ""
        return f"{answer.action}:{name}"

    @app.tool()
    async def roots(ctx: Context) -> str:
        """roots/list from inside a tool."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = await ctx.session.list_roots()
        return ",".join(str(root.uri) for root in result.roots)

    @app.tool()
    async def generate(count: int, ctx: Context, pause: float = 0.0) -> CallToolResult:
        """Stream ``count`` tokens ("t0 t1 ..."), then return the aggregate."""
        probe.sent = 0
        try:
            async with mcp_ws.partial_results(ctx) as out:
                probe.stream_started.set()
                for i in range(count):
                    await out.send_text(f"t{i} ")
                    probe.sent += 1
                    if pause:
                        await anyio.sleep(pause)
        except anyio.get_cancelled_exc_class():
            probe.stream_cancelled.set()
            raise
        except mcp_ws.CallClosedError as exc:
            probe.send_error = exc
            probe.stream_cancelled.set()
            raise
        return out.result()

    @app.tool()
    async def tagged(
        tag: str, count: int, ctx: Context, pause: float = 0.0, ask: bool = False
    ) -> CallToolResult:
        """Count this run under ``tag`` in the probe, stream ``count`` tokens (asking the
        client for a sample halfway with ``ask``), then return them all."""
        probe.runs[tag] = probe.runs.get(tag, 0) + 1
        if runs_file := os.environ.get("MCP_WS_TEST_RUNS"):  # shared by several processes
            with open(runs_file, "a") as runs:  # noqa: ASYNC230 - one short line, appended
                runs.write(f"{tag}\n")
        async with mcp_ws.partial_results(ctx) as out:
            for i in range(count):
                if ask and i == count // 2:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        reply = await ctx.session.create_message(
                            [
                                SamplingMessage(
                                    role="user", content=TextContent(type="text", text=tag)
                                )
                            ],
                            max_tokens=5,
                            related_request_id=ctx.request_id,
                        )
                    assert isinstance(reply.content, TextContent)
                    await out.send_text(f"[{reply.content.text}] ")
                await out.send_text(f"{tag}.{i} ")
                if pause:
                    await anyio.sleep(pause)
        return out.result()

    @app.tool()
    def runs() -> dict[str, int]:
        """How many times each `tagged` call ran, by tag."""
        return dict(probe.runs)

    @app.tool()
    async def bulk(chunks: int, size: int, ctx: Context, pause: float = 0.0) -> str:
        """Stream ``chunks`` text deltas of ``size`` characters (``pause`` seconds apart);
        return a summary only."""
        probe.sent = 0
        async with mcp_ws.partial_results(ctx) as out:
            probe.stream_started.set()
            for _ in range(chunks):
                await out.send_text("b" * size)
                probe.sent += 1
                if pause:
                    await anyio.sleep(pause)
        return f"{probe.sent} chunks"

    @app.tool()
    async def mixed(ctx: Context) -> CallToolResult:
        """Text into two blocks by index, binary, and structured deltas; start meta."""
        async with mcp_ws.partial_results(ctx, meta={"model": "test-1"}) as out:
            await out.send_text("Hello")
            await out.send_bytes(b"\x00\x01\xffPNG", "image/png")
            await out.send_text(", world", index=0)
            await out.send_text("second", index=2)
            await out.send_structured({"rows": 1})
            await out.send_structured({"done": True})
        return out.result()

    @app.tool()
    async def stream_then_fail(ctx: Context) -> str:
        """Stream two deltas, then raise."""
        async with mcp_ws.partial_results(ctx) as out:
            await out.send_text("partial ")
            await out.send_text("output")
            raise ToolError("the model fell over")

    @app.tool()
    def whoami() -> str:
        """This server's process id (sessions behind `mcp-ws bridge` each have their own)."""
        return str(os.getpid())

    @app.tool()
    def go_away() -> str:
        """Send a graceful GOAWAY on this connection: calls in flight finish, and a client
        with handover sends its next requests on a new connection."""
        bridge = handling_bridge()
        if bridge is not None and bridge.mux is not None:
            bridge.mux.close(ErrorCode.NO_ERROR, "going away, as asked")
        return "going away"

    @app.tool()
    def client_name(ctx: Context) -> str:
        """The client's name from its initialize on this connection ("" if it sent none)."""
        params = ctx.request_context.session.client_params
        return params.client_info.name if params is not None else ""

    @app.tool()
    def probe_state() -> str:
        """Which of the probe's events fired: started, cancelled, finished."""
        fired = [
            ("started", probe.started),
            ("cancelled", probe.cancelled),
            ("finished", probe.finished),
        ]
        return ",".join(name for name, event in fired if event.is_set())

    @app.tool()
    async def first_then_busy(busy: float, ctx: Context) -> CallToolResult:
        """Send one delta, then compute for ``busy`` seconds without yielding, then another."""
        async with mcp_ws.partial_results(ctx) as out:
            await out.send_text("first ")
            time.sleep(busy)  # noqa: ASYNC251 - a producer that computes without yielding
            await out.send_text("second")
        return out.result()

    @app.tool()
    def crash(code: int) -> str:
        """Say so on stderr, then exit the process at once with ``code``."""
        print(f"crashing with code {code}", file=sys.stderr, flush=True)
        os._exit(code)

    @app.tool()
    def sent() -> int:
        """How many partial results the last streaming tool got through (its producer's progress)."""
        return probe.sent

    @app.tool()
    async def stats() -> dict[str, int]:
        """This process's open file descriptors, event-loop tasks and mcp-ws connections."""
        return {
            "fds": len(os.listdir("/proc/self/fd")),
            "tasks": task_count(),
            "connections": SERVING[0].connection_count if SERVING else -1,
        }

    @app.resource("test://greeting")
    def greeting() -> str:
        """A static resource."""
        return "hello from a resource"

    @app.prompt()
    def review(code: str) -> str:
        """A prompt with one argument."""
        return f"Please review: {code}"

    return app


SERVING: list[mcp_ws.McpWsServer] = []  # the server `_main` runs, for the stats tool


def task_count() -> int:
    """Tasks alive in this event loop (asyncio or trio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return count(root)
    import asyncio

    return len(asyncio.all_tasks())


async def _main(
    seconds: float,
    timeouts: float | None,
    max_streams: int | None,
    ping: float | None,
    token: str | None,
    port: int = 0,
    resume_grace: float | None = None,
    refuse_resumes: bool = False,
    store: str | None = None,
) -> None:
    """Serve the app on ``port`` (0: a free one) and print its URL (for subprocess tests);
    ``refuse_resumes`` keeps no detached connection, so every resume is refused;
    ``store`` is a ``redis://`` URL to keep streamed calls in (shared with other
    servers)."""
    options: dict[str, Any] = {}
    if store is not None:
        options["store"] = mcp_ws.RedisStore(store)
    if refuse_resumes:
        options["resume_limits"] = ResumeLimits(max_detached=0)
    if token is not None:
        options["auth"] = mcp_ws.bearer_token(token)
    if timeouts is not None:  # short handshake and HELLO timeouts, for the chaos tests
        options["handshake_timeout"] = timeouts
        options["limits"] = mcp_ws.Limits(hello_timeout=timeouts)
    if max_streams is not None or ping is not None:
        defaults = mcp_ws.Settings()
        options["settings"] = mcp_ws.Settings(
            max_message_size=2**26,
            max_streams=defaults.max_streams if max_streams is None else max_streams,
            ping_interval=defaults.ping_interval if ping is None else ping,
        )
    if resume_grace is not None:
        options["resume_grace"] = resume_grace
    async with mcp_ws.serving(build_app(), port=port, **options) as server:
        SERVING.append(server)
        print(server.url, flush=True)
        await anyio.sleep(seconds)


if __name__ == "__main__":
    if sys.argv[1:2] == ["stdio"]:  # the same app over the SDK's stdio transport
        stdio_app = build_app()
        mcp_ws.advertise_streaming(stdio_app)
        stdio_app.run("stdio")
    else:
        parser = argparse.ArgumentParser(prog="python -m tests.apps")
        parser.add_argument("seconds", type=float, nargs="?", default=60)
        parser.add_argument("backend", nargs="?", default="asyncio")
        parser.add_argument("--timeouts", type=float, help="handshake and HELLO timeouts")
        parser.add_argument("--max-streams", type=int, help="the server's max_streams")
        parser.add_argument("--ping-interval", type=float, help="the server's keepalive")
        parser.add_argument("--token", help="require this bearer token")
        parser.add_argument("--port", type=int, default=0, help="the port (0: a free one)")
        parser.add_argument("--resume-grace", type=float, help="seconds a detached session waits")
        parser.add_argument("--refuse-resumes", action="store_true", help="keep no detached one")
        parser.add_argument("--store", help="keep streamed calls in this Redis (redis://...)")
        args = parser.parse_args()
        anyio.run(
            _main,
            args.seconds,
            args.timeouts,
            args.max_streams,
            args.ping_interval,
            args.token,
            args.port,
            args.resume_grace,
            args.refuse_resumes,
            args.store,
            backend=args.backend,
        )
