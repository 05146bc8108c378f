"""Transport-only round trip: mcp-ws against the SDK's stdio transport and a raw
``websockets`` echo, no MCP session.

Run: ``python bench/transport_rtt.py [--calls 3000] [--repeats 5]``.

Each side exchanges ``SessionMessage`` objects over the transport's ``(read, write)``
streams: the client sends a small ``tools/call`` request, the server answers it at once
with a fixed result. No ``ClientSession`` or ``Server`` runs, so what is timed is the
transport alone: serialising, framing, the socket or pipe, parsing, and validating the
JSON-RPC message with pydantic on each side. The full ``mcp-ws bench`` round trip adds
the SDK's session work on both sides, which is the same on every transport.

The floor is a raw ``websockets`` echo (its asyncio client and server, no mux, no
pydantic): the client sends the bytes mcp-ws puts on the wire for the request, the
server sends back the bytes of the response. That is what one WebSocket round trip
costs on this machine in Python; the ratio mcp-ws / raw echo is the price of the mux and
the SDK binding.

CPU per call counts both processes (the server reports its own when asked). As in
``mcp-ws bench``, the client keeps to one CPU and each server to another when there are
two. Every loop is bounded in count; each server is a child process that ends with its
stdin.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCRequest, JSONRPCResponse

import mcp_ws
from mcp_ws.bench.app import CPU_ENV, keep_to_assigned_cpu
from mcp_ws.bench.targets import cpu_placement
from mcp_ws.sdk.server import serving_sessions

RESULT = {"content": [{"type": "text", "text": "x" * 48}], "isError": False}
CPU_METHOD = "bench/cpu"  # answered with the server's CPU seconds so far


async def echo_session(read: Any, write: Any) -> None:
    """Answer every request at once: ``CPU_METHOD`` with CPU time, others with RESULT."""
    async with read, write:
        async for item in read:
            if isinstance(item, Exception):
                continue
            message = item.message
            if not isinstance(message, JSONRPCRequest):
                continue
            result = {"cpu": time.process_time()} if message.method == CPU_METHOD else RESULT
            response = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
            await write.send(SessionMessage(message=response))


async def serve_ws() -> None:
    async with serving_sessions(echo_session, port=0) as server:
        print(server.url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes stdin


def _wire_bytes() -> tuple[bytes, bytes]:
    """What mcp-ws sends for the request and for its response (one DATA/OPEN frame each)."""
    from mcp_ws.protocol import Connection, Role  # noqa: PLC0415

    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    for data in client.data_to_send():
        server.receive_data(data)
    for data in server.data_to_send():
        client.receive_data(data)
    params = {"name": "echo", "arguments": {"text": "x" * 48}}
    sid = client.open_stream(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}, end=True
    )
    (request,) = client.data_to_send()
    server.receive_data(request)
    server.send_message(sid, {"jsonrpc": "2.0", "id": 1, "result": RESULT}, end=True)
    (response,) = server.data_to_send()
    return request, response


async def serve_raw() -> None:
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    _, response = _wire_bytes()

    async def echo(websocket: ServerConnection) -> None:
        async for _ in websocket:
            if _ == b"cpu":
                await websocket.send(str(time.process_time()).encode())
            else:
                await websocket.send(response)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ws://127.0.0.1:{port}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


async def measure_raw(url: str, calls: int) -> tuple[float, float]:
    """As `measure`, over a raw websockets echo."""
    from websockets.asyncio.client import connect  # noqa: PLC0415

    request, _ = _wire_bytes()
    async with connect(url, compression=None) as websocket:
        for _ in range(100):
            await websocket.send(request)
            await websocket.recv()
        await websocket.send(b"cpu")
        server_start = float(await websocket.recv())
        own_start = time.process_time()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            await websocket.send(request)
            await websocket.recv()
            times.append(time.perf_counter() - started)
        own = time.process_time() - own_start
        await websocket.send(b"cpu")
        server = float(await websocket.recv()) - server_start
    return statistics.median(times) * 1000, (own + server) / calls * 1000


async def serve_stdio() -> None:
    async with stdio_server() as (read, write):
        await echo_session(read, write)


async def _request(read: Any, write: Any, rid: int, method: str) -> dict[str, Any]:
    params = {"name": "echo", "arguments": {"text": "x" * 48}}
    request = JSONRPCRequest(jsonrpc="2.0", id=rid, method=method, params=params)
    await write.send(SessionMessage(message=request))
    while True:
        item = await read.receive()
        if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCResponse):
            return dict(item.message.result)


async def measure(read: Any, write: Any, calls: int) -> tuple[float, float]:
    """p50 round trip in ms and CPU per call in ms (both processes)."""
    for rid in range(100):  # warm up
        await _request(read, write, rid, "tools/call")
    server_start = (await _request(read, write, 100, CPU_METHOD))["cpu"]
    own_start = time.process_time()
    times = []
    for rid in range(101, 101 + calls):
        started = time.perf_counter()
        await _request(read, write, rid, "tools/call")
        times.append(time.perf_counter() - started)
    own = time.process_time() - own_start
    server = (await _request(read, write, 101 + calls, CPU_METHOD))["cpu"] - server_start
    return statistics.median(times) * 1000, (own + server) / calls * 1000


PLACEMENT = cpu_placement()
SERVER_ENV = {CPU_ENV: str(PLACEMENT[1])} if PLACEMENT else {}


async def run_ws(calls: int, kind: str = "ws") -> tuple[float, float]:
    with anyio.fail_after(120):
        async with await anyio.open_process(
            [sys.executable, __file__, "--serve", kind],
            stderr=None,
            env={**os.environ, **SERVER_ENV},
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1000)
            url = line.decode().strip()
            if not url.startswith("ws://"):
                raise RuntimeError("the mcp-ws echo server did not start")
            try:
                if kind == "raw":
                    return await measure_raw(url, calls)
                async with mcp_ws.connect(url) as (read, write):
                    return await measure(read, write, calls)
            finally:
                await process.stdin.aclose()  # the server ends with its stdin


async def run_stdio(calls: int) -> tuple[float, float]:
    params = StdioServerParameters(
        command=sys.executable, args=[__file__, "--serve", "stdio"], env=SERVER_ENV or None
    )
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write):
            return await measure(read, write, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve", choices=["ws", "stdio", "raw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        keep_to_assigned_cpu()
        serve = {"ws": serve_ws, "stdio": serve_stdio, "raw": serve_raw}[args.serve]
        anyio.run(serve)
        return
    if PLACEMENT:
        os.sched_setaffinity(0, {PLACEMENT[0]})
    figures: dict[str, list[tuple[float, float]]] = {"mcp-ws": [], "stdio": [], "raw echo": []}
    for _ in range(args.repeats):  # interleaved, so all see the same machine
        figures["mcp-ws"].append(anyio.run(run_ws, args.calls))
        figures["stdio"].append(anyio.run(run_stdio, args.calls))
        figures["raw echo"].append(anyio.run(run_ws, args.calls, "raw"))
    print(f"{'transport':10} {'p50 ms (min-max)':>24} {'CPU ms/call (min-max)':>26}")
    for name, runs in figures.items():
        p50s, cpus = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"{name:10} {statistics.median(p50s):8.3f} ({min(p50s):.3f}-{max(p50s):.3f})"
            f"{statistics.median(cpus):12.3f} ({min(cpus):.3f}-{max(cpus):.3f})"
        )
    ours, stock, raw = (
        statistics.median(r[0] for r in figures[k]) for k in ("mcp-ws", "stdio", "raw echo")
    )
    print(f"round trip ratio, mcp-ws / stdio: {ours / stock:.2f}x")
    print(f"round trip ratio, mcp-ws / raw websockets echo: {ours / raw:.2f}x")


if __name__ == "__main__":
    main()
