"""``mcp-ws demo``: streaming, a cancel, and a timing against the SDK's stdio transport.

Everything runs on loopback in this process (the stdio comparison starts the same
server as a child process). No network, no keys, no setup.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any, TextIO

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..sdk.client import connect
from ..sdk.server import serving
from ..sdk.stream_tool import (
    CallCancelledError,
    Completed,
    Delta,
    Failed,
    Started,
    partial_result_binding,
    stream_tool,
)
from .common import describe_os_error, fail, wait_for_stop_signal
from .demo_app import ANSWER, STDIO_COMMAND, WS_COMMAND, DemoProbe, build_demo_app

__all__ = ["demo_command"]

ROUND_TRIPS = 200
STREAM_DELTAS = 2000


async def _stream_answer(session: ClientSession, out: TextIO) -> bool:
    started = time.perf_counter()
    first: float | None = None
    deltas = 0
    async with stream_tool(session, "answer", {"pace": 0.015}) as stream:
        async for event in stream:
            if isinstance(event, Started):
                out.write(f"   [start, meta {event.meta}]\n   ")
            elif isinstance(event, Delta):
                if first is None:
                    first = time.perf_counter() - started
                deltas += 1
                out.write(event.text)
                out.flush()
    ok = isinstance(stream.outcome, Completed) and stream.text.strip() == ANSWER
    first_ms = (first or 0) * 1000
    out.write(
        f"\n   {deltas} deltas in order, first after {first_ms:.1f} ms; the final result "
        f"{'matches' if ok else 'DOES NOT MATCH'} them\n\n"
    )
    return ok


async def _cancel_a_count(session: ClientSession, probe: DemoProbe, out: TextIO) -> bool:
    out.write("   ")
    async with stream_tool(session, "count", {"to": 1000, "pause": 0.02}) as stream:
        async for event in stream:
            if isinstance(event, Delta):
                out.write(event.text)
                out.flush()
                if event.seq == 5:
                    stream.cancel()  # what Ctrl-C does in `mcp-ws call`
    with anyio.move_on_after(5):
        await probe.cancelled.wait()
    outcome = stream.outcome
    cancelled = isinstance(outcome, Failed) and isinstance(outcome.error, CallCancelledError)
    out.write(
        f"-> cancelled by the client; the server's handler stopped after {probe.sent} of 1000\n\n"
        if cancelled and probe.cancelled.is_set()
        else "-> the cancel did not reach the server\n\n"
    )
    return cancelled and probe.cancelled.is_set()


async def _measure(session: ClientSession) -> dict[str, float]:
    """Round trip p50 of small calls, and deltas per second of one stream."""
    for _ in range(20):  # warm up
        await session.call_tool("echo", {"text": "hi"})
    times = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        await session.call_tool("echo", {"text": "hi"})
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    deltas = 0
    async with stream_tool(session, "stream", {"deltas": STREAM_DELTAS}) as stream:
        async for event in stream:
            deltas += isinstance(event, Delta)
    elapsed = time.perf_counter() - started
    return {"rtt_ms": statistics.median(times) * 1000, "deltas_per_s": deltas / elapsed}


async def _measure_ws() -> dict[str, float]:
    """The same measurement against the demo server in its own process, like stdio's."""
    process = await anyio.open_process([sys.executable, *WS_COMMAND])
    try:
        assert process.stdout is not None
        url = (await process.stdout.receive()).decode().strip()
        async with connect(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await _measure(session)
    finally:
        if process.stdin is not None:
            await process.stdin.aclose()
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def _measure_stdio() -> dict[str, float]:
    params = StdioServerParameters(command=sys.executable, args=list(STDIO_COMMAND))
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, notification_bindings=[partial_result_binding()]) as session,
    ):
        await session.initialize()
        return await _measure(session)


def _table(ws: dict[str, float], stdio: dict[str, float] | None, out: TextIO) -> None:
    table = Table(title=None, box=None, pad_edge=False)
    table.add_column("   ")
    table.add_column("mcp-ws", justify="right")
    table.add_column("SDK stdio", justify="right")
    table.add_column("mcp-ws vs stdio", justify="right")
    rows = [
        (f"round trip p50, {ROUND_TRIPS} small calls", "rtt_ms", False),
        (f"deltas per second, {STREAM_DELTAS}-delta stream", "deltas_per_s", True),
    ]
    for label, key, higher_better in rows:
        ours = ws[key]
        theirs = stdio[key] if stdio else None
        fmt = "{:,.0f}" if higher_better else "{:.2f} ms"
        ratio = ""
        if theirs:
            ratio = f"{ours / theirs:.1f}x" if higher_better else f"{ours / theirs:.2f}x time"
        table.add_row(
            f"   {label}",
            fmt.format(ours),
            fmt.format(theirs) if theirs is not None else "failed",
            ratio,
        )
    Console(file=out, width=100, force_terminal=False, color_system=None).print(table)


async def demo_command(args: Any = None, out: TextIO | None = None) -> int:
    """Run the demo; the exit code is 0 when every step did what it shows. With ``--web``,
    serve the demo app and its chat page on loopback until SIGINT or SIGTERM instead."""
    out = out or sys.stdout
    if getattr(args, "web", False):
        return await _serve_web(args.port, out)
    probe = DemoProbe()
    async with serving(build_demo_app(probe), port=0) as server:
        out.write(
            f"mcp-ws {__version__} demo: an MCP server and its client on loopback, {server.url}\n\n"
        )
        async with connect(server.url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            out.write("1. a streamed answer: each token is a partial result, shown as it arrives\n")
            streamed = await _stream_answer(session, out)
            out.write("2. a cancel: the client stops a long count after 5 numbers\n")
            cancelled = await _cancel_a_count(session, probe, out)
    out.write(
        "3. the same server over mcp-ws and the SDK's stdio transport, each in a child process\n"
    )
    with anyio.fail_after(60):
        ours = await _measure_ws()
    theirs: dict[str, float] | None
    try:
        with anyio.fail_after(60):
            theirs = await _measure_stdio()
    except (OSError, TimeoutError) as exc:
        out.write(f"   (the stdio run failed: {exc})\n")
        theirs = None
    _table(ours, theirs, out)
    out.write(
        "\n   Next: `mcp-ws serve my_server:app`, then"
        " `mcp-ws call ws://127.0.0.1:8765/mcp TOOL`.\n"
    )
    return 0 if streamed and cancelled else 1


async def _serve_web(port: int, out: TextIO) -> int:
    try:
        async with serving(build_demo_app(), port=port, web=True) as server:
            out.write(f"mcp-ws {__version__} demo: open {server.page_url} in a browser\n")
            out.write(f"   (the WebSocket endpoint is {server.url}; Ctrl-C stops)\n")
            out.flush()
            received = await wait_for_stop_signal()
            out.write(f"mcp-ws: {received.name}: stopped\n")
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {describe_os_error(exc)}")
    return 0
