"""Transport-only round trip: mcp-ws against the SDK's stdio transport and a raw
``websockets`` echo, no MCP session.

Run: ``python bench/transport_rtt.py [--calls 3000] [--repeats 3] [--blocks 20] [--build]``.

Each side exchanges ``SessionMessage`` objects over the transport's ``(read, write)``
streams: the client sends a small ``tools/call`` request, the server answers it at once
with a fixed result. No ``ClientSession`` or ``Server`` runs, so what is timed is the
transport alone: serialising, framing, the socket or pipe, parsing, and validating the
JSON-RPC message with pydantic on each side. The full ``mcp-ws bench`` round trip adds
the SDK's session work on both sides, which is the same on every transport.

Building the message objects is the session's work too, so it is left out: the client
cycles through `POOL` requests built before timing, and the server builds the response
to each request id once and sends it again when that id comes back. Building a request
and a response with pydantic costs about 30,000 instructions, about a tenth of the raw
echo's whole round trip. ``--build`` builds both for every call instead, as this runner
did up to History 19 in bench/RESULTS.md.

The floor is a raw ``websockets`` echo (its asyncio client and server, no mux, no
pydantic): the client sends the bytes mcp-ws puts on the wire for the request, the
server sends back the bytes of the response. That is what one WebSocket round trip
costs on this machine in Python; the ratio mcp-ws / raw echo is the price of the mux and
the SDK binding.

All three connections are open at once and take turns: each repeat is ``--blocks``
blocks of ``calls / blocks`` round trips per transport, who goes first rotating. The
machine's own speed drifts over seconds (bench/RESULTS.md), so one transport measured
after another's whole run can see a different machine; blocks a few tens of milliseconds
long see the same one, and the ratios hold from run to run.

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
PARAMS = {"name": "echo", "arguments": {"text": "x" * 48}}
CPU_METHOD = "bench/cpu"  # answered with the server's CPU seconds so far
POOL = 64
"""Requests the client builds before timing and sends in turn (ids 1 to POOL)."""
BUILD_FLAG = "--build"


async def echo_session(read: Any, write: Any, *, build: bool = False) -> None:
    """Answer every request at once: ``CPU_METHOD`` with CPU time, others with RESULT.
    Unless ``build``, the response to each request id is built once (at most
    ``4 * POOL`` of them are kept) and sent again when the id comes back."""
    built: dict[object, SessionMessage] = {}
    async with read, write:
        async for item in read:
            if isinstance(item, Exception):
                continue
            message = item.message
            if not isinstance(message, JSONRPCRequest):
                continue
            if message.method == CPU_METHOD:
                result = {"cpu": time.process_time()}
                response = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
                await write.send(SessionMessage(message=response))
                continue
            answer = None if build else built.get(message.id)
            if answer is None:
                response = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=RESULT)
                answer = SessionMessage(message=response)
                if not build and len(built) < 4 * POOL:
                    built[message.id] = answer
            await write.send(answer)


def _building() -> bool:
    return BUILD_FLAG in sys.argv


async def _echo_session(read: Any, write: Any) -> None:
    await echo_session(read, write, build=_building())


async def serve_ws() -> None:
    async with serving_sessions(_echo_session, port=0) as server:
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


class RawEcho:
    """The floor: a raw websockets client on the echo server (`serve_raw`)."""

    def __init__(self, websocket: Any) -> None:
        self.websocket = websocket
        self.request, _ = _wire_bytes()

    async def call(self) -> None:
        await self.websocket.send(self.request)
        await self.websocket.recv()

    async def server_cpu(self) -> float:
        await self.websocket.send(b"cpu")
        return float(await self.websocket.recv())


async def serve_stdio() -> None:
    async with stdio_server() as (read, write):
        await _echo_session(read, write)


def _message(rid: int, method: str) -> SessionMessage:
    return SessionMessage(
        message=JSONRPCRequest(jsonrpc="2.0", id=rid, method=method, params=PARAMS)
    )


async def _exchange(read: Any, write: Any, request: SessionMessage) -> JSONRPCResponse:
    await write.send(request)
    while True:
        item = await read.receive()
        if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCResponse):
            return item.message


async def _request(read: Any, write: Any, rid: int, method: str) -> dict[str, Any]:
    """Build a request, send it, and return its response's result."""
    return dict((await _exchange(read, write, _message(rid, method))).result)


class Session:
    """A transport's ``(read, write)`` pair, exchanging `SessionMessage` objects: `POOL`
    requests built in advance and sent in turn, or (``build``) one built per call."""

    def __init__(self, read: Any, write: Any, *, build: bool = False) -> None:
        self.read, self.write = read, write
        self.build = build
        self.rid = 0
        self.pool = [] if build else [_message(rid, "tools/call") for rid in range(1, POOL + 1)]

    async def call(self) -> None:
        self.rid += 1
        if self.build:
            request = _message(self.rid, "tools/call")
        else:
            request = self.pool[self.rid % POOL]
        await _exchange(self.read, self.write, request)

    async def server_cpu(self) -> float:
        self.rid += 1  # an id of its own: above POOL, never one a pooled request has
        rid = POOL + self.rid
        return float((await _request(self.read, self.write, rid, CPU_METHOD))["cpu"])


Peer = Session | RawEcho


async def measure(
    peers: dict[str, Peer], calls: int, blocks: int
) -> dict[str, tuple[float, float]]:
    """p50 round trip in ms and CPU per call in ms (both processes) of each peer, the
    peers taking turns in ``blocks`` blocks (who goes first rotates), so that all of
    them see the same machine: its speed drifts over seconds (bench/RESULTS.md)."""
    for peer in peers.values():
        for _ in range(100):  # warm up
            await peer.call()
    times: dict[str, list[float]] = {name: [] for name in peers}
    cpu = dict.fromkeys(peers, 0.0)
    each = max(1, calls // blocks)
    order = list(peers)
    for block in range(blocks):
        turn = block % len(order)
        for name in order[turn:] + order[:turn]:
            peer = peers[name]
            server_start = await peer.server_cpu()
            own_start = time.process_time()
            for _ in range(each):
                started = time.perf_counter()
                await peer.call()
                times[name].append(time.perf_counter() - started)
            own = time.process_time() - own_start
            cpu[name] += own + await peer.server_cpu() - server_start
    return {
        name: (statistics.median(times[name]) * 1000, cpu[name] / len(times[name]) * 1000)
        for name in peers
    }


PLACEMENT = cpu_placement()
SERVER_ENV = {CPU_ENV: str(PLACEMENT[1])} if PLACEMENT else {}


@asynccontextmanager
async def _server(kind: str, build: bool) -> AsyncIterator[str]:
    """A child process serving ``kind`` ("ws" or "raw"); yields its URL. It ends with
    its stdin."""
    async with await anyio.open_process(
        [sys.executable, __file__, "--serve", kind, *([BUILD_FLAG] if build else [])],
        stderr=None,
        env={**os.environ, **SERVER_ENV},
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 1000)
        url = line.decode().strip()
        if not url.startswith("ws://"):
            raise RuntimeError(f"the {kind} echo server did not start")
        try:
            yield url
        finally:
            await process.stdin.aclose()


async def run(calls: int, blocks: int, build: bool) -> dict[str, tuple[float, float]]:
    """All three connections open at once, measured taking turns."""
    from websockets.asyncio.client import connect  # noqa: PLC0415

    params = StdioServerParameters(
        command=sys.executable,
        args=[__file__, "--serve", "stdio", *([BUILD_FLAG] if build else [])],
        env=SERVER_ENV or None,
    )
    with anyio.fail_after(600):
        async with (
            _server("ws", build) as ws_url,
            _server("raw", build) as raw_url,
            mcp_ws.connect(ws_url) as (ws_read, ws_write),
            stdio_client(params) as (stdio_read, stdio_write),
            connect(raw_url, compression=None) as websocket,
        ):
            peers: dict[str, Peer] = {
                "mcp-ws": Session(ws_read, ws_write, build=build),
                "stdio": Session(stdio_read, stdio_write, build=build),
                "raw echo": RawEcho(websocket),
            }
            return await measure(peers, calls, blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=20, help="turns per repeat (default 20)")
    parser.add_argument(
        BUILD_FLAG,
        action="store_true",
        help="build the request and the response for every call (as up to History 19)",
    )
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
    for _ in range(args.repeats):
        for name, found in anyio.run(run, args.calls, args.blocks, args.build).items():
            figures[name].append(found)
    built = "built per call" if args.build else f"built once ({POOL} requests in turn)"
    print(f"messages: {built}")
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
    # Each repeat's own ratios, beside its echo's p50: on a shared machine whole repeats
    # can run at about half speed (bench/RESULTS.md), and the ratios move with it.
    for i, (w, s, r) in enumerate(zip(*(figures[k] for k in figures), strict=True)):
        print(
            f"repeat {i + 1}: raw echo {r[0]:.3f} ms; mcp-ws / echo {w[0] / r[0]:.2f}x, "
            f"mcp-ws / stdio {w[0] / s[0]:.2f}x"
        )


if __name__ == "__main__":
    main()
