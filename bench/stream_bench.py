"""Streaming: deltas per second and time to first delta for a 10,000-delta stream.

    python bench/stream_bench.py [--deltas 10000] [--repeats 3]

mcp-ws carries the tool's output natively (``partial_results`` -> ``stream_tool``, on
the call's own stream under flow control). The SDK's stdio and streamable HTTP
transports carry the same tokens the only way stock MCP can: progress notifications
(``report_progress`` -> ``progress_callback``). Same MCPServer, each server in its own
process, one run. Prints a Markdown table of medians (min-max over repeats).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transport_bench import fmt, start, stdio_target

import mcp_ws


async def native(target: Any, deltas: int) -> tuple[float, float]:
    """(deltas/s, ms to first delta) through the streaming extension."""
    async with Client(target(), mode="legacy") as client:
        await client.call_tool("echo", {"text": "warm"})
        started = time.perf_counter()
        first = 0.0
        seen = 0
        async with mcp_ws.stream_tool(client, "stream", {"count": deltas}) as stream:
            async for event in stream:
                if isinstance(event, mcp_ws.Delta):
                    seen += 1
                    if seen == 1:
                        first = time.perf_counter() - started
        total = time.perf_counter() - started
        assert seen == deltas, f"saw {seen} of {deltas} deltas"
    return deltas / total, first * 1000


async def emulated(target: Any, deltas: int) -> tuple[float, float]:
    """(deltas/s, ms to first delta) with progress notifications as the deltas."""
    async with Client(target(), mode="legacy") as client:
        await client.call_tool("echo", {"text": "warm"})
        started = time.perf_counter()
        first = 0.0
        seen = 0

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            nonlocal seen, first
            seen += 1
            if seen == 1:
                first = time.perf_counter() - started

        await client.call_tool("progress", {"count": deltas}, progress_callback=on_progress)
        total = time.perf_counter() - started
    return seen / total, first * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deltas", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    for kind in ("ws", "stdio", "http"):
        name = {
            "ws": "mcp-ws (native partial results)",
            "stdio": "stdio (progress)",
            "http": "streamable HTTP (progress)",
        }[kind]
        for _ in range(args.repeats):
            if kind == "stdio":
                proc, target = None, stdio_target
            else:
                proc, target = start(kind)
            try:
                run = native if kind == "ws" else emulated
                rows.setdefault(name, []).append(anyio.run(run, target, args.deltas))
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    print(f"| transport ({args.deltas} deltas) | deltas/s | first delta ms |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {fmt([v[0] for v in values])} | {fmt([v[1] for v in values])} |")
    best_stock = max(
        statistics.median(v[0] for v in values)
        for name, values in rows.items()
        if not name.startswith("mcp-ws")
    )
    ours = statistics.median(v[0] for v in rows["mcp-ws (native partial results)"])
    print(f"\nmcp-ws / best stock transport, deltas per second: {ours / best_stock:.1f}x")


if __name__ == "__main__":
    main()
