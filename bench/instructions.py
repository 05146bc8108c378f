"""Instructions per round trip, counted by callgrind: the figure that reproduces exactly.

Run: ``python bench/instructions.py [--kinds ws,raw]`` (needs ``valgrind``; about three
minutes, as everything runs some fifty times slower under it).

Wall-clock and CPU time move with the machine (bench/RESULTS.md); the number of
instructions a round trip executes does not. Each kind runs client and server in one
process over loopback TCP (the exchange of ``transport_rtt.py``: a small ``tools/call``
answered at once), once with 1,000 round trips and once with 200, under
``valgrind --tool=callgrind``; the difference divided by 800 is the cost of one round
trip, both sides, start-up and imports cancelled out. ``PYTHONHASHSEED=0`` keeps the
interpreter's own hashing the same from run to run; what is left (ports, masking keys)
moves the count by well under 1%.

``ws`` is mcp-ws (``mcp_ws.connect`` and ``serving_sessions``, the SDK's message objects
on both sides, built once as ``transport_rtt.py`` does, or per call with ``--build``);
``raw`` is the floor of ``transport_rtt.py``, a raw ``websockets`` echo
of the same bytes. The kernel's part of a round trip is not counted, so the ratio here
is larger than the ratio of times.

``--layers`` needs no valgrind: it counts the Python bytecodes each layer executes per
round trip (``sys.settrace`` opcode events, over 1,000 round trips after 200 to warm
up), for both kinds side by side. The count is exact and the same from run to run; it
says where the interpreter's time goes, layer by layer (the C code below a layer, such
as msgpack, pydantic or the socket calls, is not in it).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

import transport_rtt as rtt

import mcp_ws
from mcp_ws.sdk.server import serving_sessions

LONG, SHORT = 1000, 200


Window = Callable[[Callable[[], Awaitable[Any]]], Awaitable[None]]


async def _plain(call: Callable[[], Awaitable[Any]], calls: int) -> None:
    for _ in range(calls):
        await call()


async def run_ws(calls: int, build: bool, window: Window | None = None) -> None:
    async def echo(read: Any, write: Any) -> None:
        await rtt.echo_session(read, write, build=build)

    async with (
        serving_sessions(echo, port=0) as server,
        mcp_ws.connect(server.url) as (read, write),
    ):
        session = rtt.Session(read, write, build=build)
        if window is None:
            await _plain(session.call, calls)
        else:
            await window(session.call)


async def run_raw(calls: int, build: bool, window: Window | None = None) -> None:
    # build: nothing to build here
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    request, response = rtt._wire_bytes()

    async def echo(websocket: ServerConnection) -> None:
        async for _ in websocket:
            await websocket.send(response)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as websocket:

            async def call() -> None:
                await websocket.send(request)
                await websocket.recv()

            if window is None:
                await _plain(call, calls)
            else:
                await window(call)


KINDS = {"ws": run_ws, "raw": run_raw}


def count(kind: str, calls: int, build: bool) -> int:
    """Instructions callgrind counted for one run of ``kind`` with ``calls`` round trips."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--run",
            kind,
            "--calls",
            str(calls),
            *(["--build"] if build else []),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed for {kind}: {done.stderr[-2000:]}")
    return int(found.group(1))


#: Layers by where their code lives (the first prefix that matches), in table order.
LAYERS = (
    ("mcp_ws/sdk/", "mcp-ws: SDK binding (bridge, calls, handover)"),
    ("mcp_ws/transport/mux.py", "mcp-ws: the core's I/O (mux)"),
    ("mcp_ws/protocol/", "mcp-ws: protocol core (sans-I/O)"),
    ("mcp_ws/transport/", "mcp-ws: WebSocket and TCP"),
    ("websockets/", "websockets (the library)"),
    ("asyncio/", "asyncio and selectors"),
    ("selectors.py", "asyncio and selectors"),
    ("bench/", "this harness"),
)
OTHER = "everything else (contextlib, enum, anyio...)"
WARM, TRACED = 200, 1000


def bytecodes(kind: str, build: bool) -> tuple[dict[str, float], float]:
    """Bytecodes per round trip by layer, and Python calls per round trip, of ``kind``."""
    by_code: collections.Counter[str] = collections.Counter()
    calls = 0

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal calls
        if event == "call":
            calls += 1
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            by_code[frame.f_code.co_filename] += 1
        return tracer

    async def window(call: Callable[[], Awaitable[Any]]) -> None:
        await _plain(call, WARM)
        sys.settrace(tracer)
        try:
            await _plain(call, TRACED)
        finally:
            sys.settrace(None)

    anyio.run(KINDS[kind], WARM + TRACED, build, window)
    layers: dict[str, float] = {}
    for filename, n in by_code.items():
        path = filename.replace(os.sep, "/")
        name = next((layer for prefix, layer in LAYERS if prefix in path), OTHER)
        layers[name] = layers.get(name, 0.0) + n / TRACED
    return layers, calls / TRACED


def print_layers(kinds: list[str], build: bool) -> None:
    """The table of ``--layers``: bytecodes per round trip, by layer and kind."""
    found = {kind: bytecodes(kind, build) for kind in kinds}
    names = [layer for _, layer in LAYERS if any(layer in found[k][0] for k in kinds)]
    names = [*dict.fromkeys(names), OTHER]
    print(f"{'bytecodes per round trip (both sides)':50}" + "".join(f"{k:>10}" for k in kinds))
    for name in names:
        print(f"{name:50}" + "".join(f"{found[k][0].get(name, 0.0):10,.0f}" for k in kinds))
    print(f"{'total':50}" + "".join(f"{sum(found[k][0].values()):10,.0f}" for k in kinds))
    calls = "".join(f"{found[k][1]:10,.0f}" for k in kinds)
    print(f"{'Python calls (and resumptions)':50}{calls}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="ws,raw", help="comma-separated: ws, raw")
    parser.add_argument(
        "--build", action="store_true", help="build the messages per call (as up to History 19)"
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help="count Python bytecodes per round trip by layer instead (no valgrind)",
    )
    parser.add_argument("--run", choices=sorted(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=LONG, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        anyio.run(KINDS[args.run], args.calls, args.build)
        return
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        parser.error(f"unknown kind(s): {', '.join(unknown) or 'none given'}")
    if args.layers:
        print_layers(kinds, args.build)
        return
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    per_trip = {}
    for kind in kinds:
        long, short = count(kind, LONG, args.build), count(kind, SHORT, args.build)
        per_trip[kind] = (long - short) / (LONG - SHORT)
        print(f"{kind:4} {per_trip[kind]:12,.0f} instructions per round trip", flush=True)
    if "ws" in per_trip and "raw" in per_trip:
        print(f"ratio, mcp-ws / raw websockets echo: {per_trip['ws'] / per_trip['raw']:.2f}x")


if __name__ == "__main__":
    main()
