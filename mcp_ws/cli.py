"""The ``mcp-ws`` command.

``mcp-ws demo`` runs a client and a server of the mcp-ws mux back to back in memory and
shows a streamed answer, backpressure and a cancel, with no network and no setup.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from . import __version__
from .protocol import (
    Connection,
    CreditGranted,
    ErrorCode,
    MessageReceived,
    Role,
    StreamCancelled,
    StreamEnded,
)
from .protocol.events import Event

__all__ = ["main"]

ANSWER = (
    "Hello from mcp-ws: this answer travels token by token over one multiplexed "
    "connection, each token a partial result on the call's own stream."
)


def _pump(a: Connection, b: Connection, events_at_b: list[Event]) -> int:
    """Move everything ``a`` has to send into ``b``; returns the bytes moved."""
    moved = 0
    for message in a.data_to_send():
        moved += len(message)
        events_at_b.extend(b.receive_data(message))
    return moved


def _partial(token: str, seq: int) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/tools/partial_result",
        "params": {
            "partialResultToken": "demo",
            "seq": seq,
            "event": "delta",
            "content": [{"type": "text", "text": token}],
        },
    }


def demo(out: TextIO | None = None) -> int:
    """Run the in-memory demo; returns the exit code."""
    write = (out or sys.stdout).write
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    at_client: list[Event] = []
    at_server: list[Event] = []

    def flush() -> None:
        while _pump(client, server, at_server) + _pump(server, client, at_client):
            pass

    def start_call(rid: int) -> int:
        """Open a tools/call stream and deliver the request to the server."""
        request = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": "gen"}}
        stream_id = client.open_stream(request, end=True)
        flush()
        return stream_id

    flush()
    write(f"mcp-ws {__version__} demo: the mux core, client and server in one process\n\n")

    # 1. A streaming call: deltas on the call's stream, then the result with END.
    write("1. streaming call\n   ")
    sid = start_call(1)
    tokens = [t + " " for t in ANSWER.split(" ")]
    received: list[str] = []
    started = time.perf_counter()
    for seq, token in enumerate(tokens, start=1):
        server.send_message(sid, _partial(token, seq))
        flush()
        for event in at_client:
            if isinstance(event, MessageReceived):
                text = event.message["params"]["content"][0]["text"]
                received.append(text)
                write(text)
                client.acknowledge_received(event.stream_id, event.flow_controlled_length)
        at_client.clear()
        (out or sys.stdout).flush()
    final = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"content": [{"type": "text", "text": "".join(tokens)}]},
    }
    server.send_message(sid, final, end=True)
    flush()
    ended = any(isinstance(e, StreamEnded) and e.stream_id == sid for e in at_client)
    result = [e for e in at_client if isinstance(e, MessageReceived)][-1].message["result"]
    at_client.clear()
    ok = ended and "".join(received) == result["content"][0]["text"]
    elapsed = (time.perf_counter() - started) * 1000
    write(
        f"\n   {len(received)} deltas in order, then the final result "
        f"({'matches' if ok else 'DOES NOT MATCH'} the deltas), {elapsed:.1f} ms\n\n"
    )

    # 2. Backpressure: a producer far ahead of a reader that consumes nothing.
    write("2. backpressure\n")
    sid = start_call(2)
    for seq in range(64):
        server.send_message(sid, _partial("x" * 65000, seq))
    flush()
    crossed = sum(e.flow_controlled_length for e in at_client if isinstance(e, MessageReceived))
    held = server.buffered(sid)
    write(
        f"   producer offered {64 * 65000 // 1024} KiB; {crossed // 1024} KiB crossed (one stream "
        f"window), {held // 1024} KiB wait at the producer for credit\n"
    )
    grants = 0
    for _ in range(200):
        pending = [e for e in at_client if isinstance(e, MessageReceived)]
        at_client.clear()
        if not pending:
            break
        for event in pending:
            client.acknowledge_received(event.stream_id, event.flow_controlled_length)
        flush()
        grants += sum(1 for e in at_server if isinstance(e, CreditGranted))
        at_server.clear()
    write(
        f"   the reader consumed: {grants} credit grants later everything arrived "
        f"({server.buffered(sid)} bytes left queued)\n\n"
    )

    # 3. Cancel: the client stops a call mid-stream; the server's queued output is dropped.
    write("3. cancel\n")
    sid = start_call(3)
    for seq in range(40):
        server.send_message(sid, _partial("y" * 30000, seq))
    in_flight = server.data_to_send()
    client.cancel_stream(sid, ErrorCode.CANCELLED, "the user pressed stop")
    for message in in_flight:
        at_client.extend(client.receive_data(message))
    flush()
    seen = [e for e in at_server if isinstance(e, StreamCancelled)]
    write(
        f"   server saw: stream {seen[0].stream_id} cancelled ({seen[0].error_code.name}: "
        f"{seen[0].reason}); {server.buffered(sid)} bytes left queued; late frames were "
        f"credited back to the connection\n"
        if seen
        else "   cancel was not delivered\n"
    )
    return 0 if ok and seen else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcp-ws`` command."""
    parser = argparse.ArgumentParser(
        prog="mcp-ws", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--version", action="version", version=f"mcp-ws {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="streaming, backpressure and cancel in memory, no setup")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    parser.print_help()
    return 2
