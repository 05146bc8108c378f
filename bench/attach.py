"""What keeping streamed calls for re-attach costs, and how fast a re-attach is
(docs/streaming.md, "Re-attach").

Run: ``python bench/attach.py [--repeats 3] [--streams 6] [--firsts 400] [--attaches 200]
[--redis]``.

Servers of the bench app (``mcp_ws.bench.app``) run as ``mcp-ws serve`` in child
processes: one with the embedded store (the default), one with ``--no-store``, and with
``--redis`` a third with ``--store redis://`` on a redis-server this bench starts on
loopback (no persistence). This process holds a session to each, and they take turns:

- **deltas per second**: a 20,000-delta stream (``stream``), one per session in turn;
- **first delta**: from entering ``stream_tool`` to the first delta of a 1-delta
  stream, the sessions taking turns call by call (in blocks of 20, a drift of the
  machine's speed within a block fell on one session: the ratio swung from 1.07x to
  1.19x between repeats); the median of each;
- **re-attach**: against the server with the store, a second session attaches to a
  call a first one is streaming (``paced``, 200 deltas a second), ``after`` the seq
  before the last one it saw, so the first delta it gets is already kept: from entering
  ``attach`` to that delta (the handshake, the store's read and the catch-up), and to
  the outcome of a finished 1,000-delta call read whole (``after=0``).

The machine's speed drifts within a minute (bench/RESULTS.md), so the sessions alternate
and the ratios are taken within each repeat. Every loop is bounded in count and in
time; the servers end with this process.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
from mcp.client.session import ClientSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcp_ws  # noqa: E402
from bench.resume import deltas_per_second, percentile  # noqa: E402 - the same turns


@asynccontextmanager
async def served(*options: str) -> AsyncIterator[str]:
    """The bench app under ``mcp-ws serve OPTIONS``, killed on the way out."""
    command = [sys.executable, "-m", "mcp_ws", "serve", "mcp_ws.bench.app:build_bench_app"]
    process = await anyio.open_process(
        [*command, "--port", "0", "--log-level", "warning", *options]
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = (await process.stdout.receive()).decode()
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


@asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    """A redis-server on a free loopback port, in a temporary folder, no persistence."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory(prefix="mcp-ws-bench-redis-") as folder:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder]
        process = await anyio.open_process([binary, *args])
        try:
            with anyio.fail_after(10):
                while True:
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", port)
                    except OSError:
                        await anyio.sleep(0.05)
                        continue
                    await stream.aclose()
                    break
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            with anyio.CancelScope(shield=True):
                await process.aclose()


@asynccontextmanager
async def session_to(url: str) -> AsyncIterator[ClientSession]:
    async with (
        mcp_ws.connect(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def first_deltas(sessions: dict[str, ClientSession], calls: int) -> dict[str, float]:
    """Median seconds from entering ``stream_tool`` to the first delta, the sessions
    taking turns call by call (who goes first turning round each time), so that a
    drift of the machine's speed falls on all alike."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for turn in range(calls):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            async with mcp_ws.stream_tool(sessions[name], "stream", {"count": 1}) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


async def reattaches(url: str, attaches: int) -> tuple[list[float], list[float]]:
    """Seconds from entering ``attach`` to the first delta of a running call (one kept
    already), and to the outcome of a finished 1,000-delta call read whole."""
    to_delta: list[float] = []
    to_outcome: list[float] = []
    async with session_to(url) as producer, session_to(url) as reader:
        async with mcp_ws.stream_tool(producer, "stream", {"count": 1000}) as finished:
            async for _ in finished:
                pass
        assert finished.handle is not None
        for _ in range(attaches):
            started = time.perf_counter()
            async with mcp_ws.attach(reader, finished.handle, 0) as again:
                async for _ in again:
                    pass
            assert isinstance(again.outcome, mcp_ws.Completed)
            to_outcome.append(time.perf_counter() - started)
        arguments = {"count": 10**6, "rate": 200.0}
        async with mcp_ws.stream_tool(producer, "paced", arguments) as running:
            async for event in running:
                if len(to_delta) == attaches:
                    break
                if not isinstance(event, mcp_ws.Delta) or event.seq < 2:
                    continue
                assert running.handle is not None
                started = time.perf_counter()
                async with mcp_ws.attach(reader, running.handle, event.seq - 1) as attached:
                    async for seen in attached:
                        if isinstance(seen, mcp_ws.Delta):
                            assert seen.seq == event.seq
                            to_delta.append(time.perf_counter() - started)
                            break
    return to_delta, to_outcome


async def main(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        url_on = await stack.enter_async_context(served())
        urls = {
            "store on": url_on,
            "store off": await stack.enter_async_context(served("--no-store")),
        }
        if args.redis:
            redis = await stack.enter_async_context(redis_server())
            urls["redis"] = await stack.enter_async_context(served("--store", redis))
        sessions = {
            name: await stack.enter_async_context(session_to(url)) for name, url in urls.items()
        }
        for repeat in range(args.repeats):
            rate = await deltas_per_second(sessions, args.streams)
            first = await first_deltas(sessions, args.firsts)
            off_rate, off_first = rate["store off"], first["store off"]
            figures = [
                f"{name}: deltas/s {rate[name]:,.0f} ({rate[name] / off_rate:.3f}x), first "
                f"delta {first[name] * 1e3:.3f} ms ({first[name] / off_first:.3f}x)"
                for name in sessions
                if name != "store off"
            ]
            print(
                f"repeat {repeat + 1}: store off: deltas/s {off_rate:,.0f}, first delta "
                f"{off_first * 1e3:.3f} ms; " + "; ".join(figures),
                flush=True,
            )
        to_delta, to_outcome = await reattaches(url_on, args.attaches)
        for name, values in (
            ("re-attach to a running call, to its first kept delta", to_delta),
            ("re-attach to a finished 1,000-delta call, to its outcome", to_outcome),
        ):
            p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
            print(f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(values)})", flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--streams", type=int, default=6, help="streams per session")
    parser.add_argument("--firsts", type=int, default=400, help="first deltas per session")
    parser.add_argument("--attaches", type=int, default=200, help="re-attaches of each kind")
    parser.add_argument("--redis", action="store_true", help="also a server storing in Redis")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse())
