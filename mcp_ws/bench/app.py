"""The server every benchmark talks to, over every transport.

``python -m mcp_ws.bench ws|stdio|http [PORT]`` serves it: ``ws`` prints its URL and
stops when stdin closes, ``stdio`` is the SDK's stdio transport, ``http`` the SDK's
streamable HTTP transport on 127.0.0.1:PORT.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent

from ..protocol.settings import Settings
from ..sdk.partial import advertise_streaming, partial_results
from ..sdk.server import serving

__all__ = [
    "BIG_SETTINGS",
    "CPU_ENV",
    "build_bench_app",
    "keep_to_assigned_cpu",
    "main",
    "memory_kib",
]

CPU_ENV = "MCP_WS_BENCH_CPU"
"""When set (by the runner), the bench server keeps to that one CPU."""

BIG_SETTINGS = Settings(max_streams=16384, max_message_size=256 * 1024 * 1024)
"""What the bench raises above the defaults: 10,000 streams on one connection, and
messages of 64 MiB and more (the protocol's default ``max_message_size`` is 16 MiB)."""


def memory_kib(pid: int | str = "self") -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from ``/proc`` (0, 0 where absent)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class _Gauge:
    """How many ``hold`` calls are in flight at once, and the most seen since none were."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.reached = anyio.Event()

    def enter(self, wanted: int) -> None:
        if self.now == 0:  # a new round
            self.most = 0
            self.reached = anyio.Event()
        self.now += 1
        self.most = max(self.most, self.now)
        if self.now >= wanted:
            self.reached.set()


def build_bench_app() -> MCPServer:
    """The bench server: ``echo``, ``stream``, ``progress``, ``paced``,
    ``paced_progress``, ``blob``, ``hold``, ``stats``, ``collect``."""
    app = MCPServer("mcp-ws bench", log_level="WARNING")
    advertise_streaming(app)
    gauge = _Gauge()

    # Async tools: the SDK runs a sync tool in a worker thread, a cost no transport changes.
    @app.tool()
    async def echo(text: str) -> str:
        """Return ``text``."""
        return text

    @app.tool()
    async def stream(count: int, ctx: Context, size: int = 8) -> CallToolResult:
        """``count`` text deltas of ``size`` characters through the streaming extension."""
        chunk = "x" * size
        async with partial_results(ctx) as out:
            for _ in range(count):
                await out.send_text(chunk)
        return CallToolResult(content=[TextContent(type="text", text=f"{count} deltas")])

    @app.tool()
    async def progress(count: int, ctx: Context, size: int = 8) -> str:
        """``count`` progress notifications carrying ``size`` characters each: how stock
        MCP streams today."""
        chunk = "x" * size
        for i in range(count):
            await ctx.report_progress(i + 1, count, chunk)
        return f"{count} progress notifications"

    @app.tool()
    async def paced(count: int, rate: float, ctx: Context) -> CallToolResult:
        """``count`` deltas at ``rate`` per second (a model's pace), each carrying the
        monotonic time it was due, through the streaming extension."""
        start = time.monotonic()
        async with partial_results(ctx) as out:
            for i in range(count):
                due = start + i / rate
                await anyio.sleep(max(due - time.monotonic(), 0.0))
                await out.send_text(f"{due:.6f} ")
        return CallToolResult(content=[TextContent(type="text", text=f"{count} deltas")])

    @app.tool()
    async def paced_progress(count: int, rate: float, ctx: Context) -> str:
        """`paced` the way stock MCP streams: each due time in a progress message."""
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            await anyio.sleep(max(due - time.monotonic(), 0.0))
            await ctx.report_progress(i + 1, count, f"{due:.6f}")
        return f"{count} progress notifications"

    @app.tool()
    async def blob(size: int) -> str:
        """A result of ``size`` characters."""
        return "x" * size

    @app.tool()
    async def hold(until: int, seconds: float) -> int:
        """Stay in flight until ``until`` calls are (at most ``seconds``); return how many
        were in flight at most."""
        gauge.enter(until)
        try:
            with anyio.move_on_after(seconds):
                await gauge.reached.wait()
        finally:
            gauge.now -= 1
        return gauge.most

    @app.tool()
    async def collect() -> int:
        """Run a full garbage collection now (before a timed phase); return what it freed."""
        return gc.collect()

    @app.tool()
    async def stats() -> dict[str, Any]:
        """This process: pid, CPU seconds, RSS and peak RSS in KiB, the CPUs it may use."""
        rss, hwm = memory_kib()
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        return {
            "pid": os.getpid(),
            "cpu": time.process_time(),
            "rss_kib": rss,
            "hwm_kib": hwm,
            "cpus": cpus,
        }

    return app


async def _serve_ws() -> None:
    async with serving(build_bench_app(), port=0, settings=BIG_SETTINGS) as server:
        print(server.url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


def keep_to_assigned_cpu() -> None:
    """In a bench server: keep to the CPU the runner chose (`CPU_ENV`), if it chose one."""
    cpu = os.environ.get(CPU_ENV)
    if cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})


def main(argv: list[str] | None = None) -> None:
    """Serve the bench app: ``ws``, ``stdio`` or ``http PORT``."""
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else ""
    keep_to_assigned_cpu()
    if kind == "ws":
        anyio.run(_serve_ws)
    elif kind == "stdio":
        build_bench_app().run("stdio")
    elif kind == "http" and len(args) == 2:
        logging.disable(logging.WARNING)
        build_bench_app().run("streamable-http", host="127.0.0.1", port=int(args[1]))
    else:
        sys.exit("usage: python -m mcp_ws.bench ws|stdio|http PORT")


if __name__ == "__main__":
    main()
