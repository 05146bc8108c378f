"""Round trip and throughput of a small ``tools/call``: mcp-ws against the SDK's own
stdio and streamable HTTP transports, same MCPServer, same run.

    python bench/transport_bench.py [--repeats 3] [--calls 300]

Each server runs in its own process; the client is ``mcp.Client`` in both protocol eras
("modern" 2026-07-28 and "legacy" 2025-11-25). Prints a Markdown table of medians
(min-max over repeats) and the ratio of mcp-ws to the best stock transport.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

import mcp_ws

HERE = Path(__file__).resolve().parent
SERVER = str(HERE / "bench_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kind: str) -> tuple[subprocess.Popen[bytes], Any]:
    """Start a server process; return it and what `mcp.Client` should connect to."""
    if kind == "ws":
        proc = subprocess.Popen([sys.executable, SERVER, "ws"], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        return proc, lambda: mcp_ws.connect(url)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, SERVER, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return proc, lambda: f"http://127.0.0.1:{port}/mcp"


async def measure(target: Callable[[], Any], mode: str, calls: int) -> tuple[float, float, float]:
    """(median RTT ms, p99 RTT ms, calls/s with 64 in flight)."""
    async with Client(target(), mode=mode) as client:
        for _ in range(20):
            await client.call_tool("echo", {"text": "warm"})
        rtts = []
        for _ in range(calls):
            t = time.perf_counter()
            await client.call_tool("echo", {"text": "x" * 48})
            rtts.append((time.perf_counter() - t) * 1000)
        rtts.sort()
        total = calls * 4
        started = time.perf_counter()

        async def worker(n: int) -> None:
            for _ in range(n):
                await client.call_tool("echo", {"text": "x" * 48})

        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(worker, total // 64)
        rate = (total // 64 * 64) / (time.perf_counter() - started)
    return statistics.median(rtts), rtts[int(len(rtts) * 0.99) - 1], rate


def stdio_target() -> Any:
    return StdioServerParameters(command=sys.executable, args=[SERVER, "stdio"])


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    rows: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(args.repeats):
        for kind in ("ws", "stdio", "http"):
            proc = None
            if kind == "stdio":
                target = stdio_target
            else:
                proc, target = start(kind)
            try:
                for mode in ("auto", "legacy"):
                    name = {"ws": "mcp-ws", "stdio": "stdio", "http": "streamable HTTP"}[kind]
                    era = "2026-07-28" if mode == "auto" else "legacy"
                    label = f"{name} ({era})"
                    rows.setdefault(label, []).append(
                        anyio.run(measure, target, mode, args.calls)
                    )
                    print(f"  {label}: {rows[label][-1]}", file=sys.stderr)
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)

    print(f"\nsmall tools/call, {args.repeats} repeats, median (min-max)\n")
    print("| transport | RTT p50 ms | RTT p99 ms | calls/s, 64 in flight |")
    print("|---|---|---|---|")
    for label, samples in rows.items():
        p50, p99, rate = ([s[i] for s in samples] for i in range(3))
        print(f"| {label} | {fmt(p50)} | {fmt(p99)} | {fmt(rate)} |")
    for era in ("2026-07-28", "legacy"):
        ours = rows[f"mcp-ws ({era})"]
        stock = [v for k, v in rows.items() if era in k and not k.startswith("mcp-ws")]
        best_rtt = min(statistics.median(s[0] for s in v) for v in stock)
        best_rate = max(statistics.median(s[2] for s in v) for v in stock)
        rtt_ratio = statistics.median(s[0] for s in ours) / best_rtt
        rate_ratio = statistics.median(s[2] for s in ours) / best_rate
        print(f"\n{era}: RTT {rtt_ratio:.2f}x the best stock transport, throughput {rate_ratio:.2f}x")


if __name__ == "__main__":
    main()
