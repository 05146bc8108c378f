"""Codec and mux micro-benchmark: frames per second through a sans-I/O peer pair.

Run: ``python bench/mux_bench.py [--seconds 2] [--repeats 3]``. Every loop is bounded in
count and in time. Each figure is encode + schedule + coalesce on the sender and decode +
reassemble + deliver + acknowledge on the receiver, in one process on one core.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mcp_ws.protocol import Connection, MessageReceived, Role, Settings

CASES = {
    "100 B deltas": 100,
    "64 KiB chunks": 64 * 1024 - 64,  # one frame each after the message envelope
}


def run(size: int, seconds: float, max_messages: int = 2_000_000) -> tuple[float, float]:
    """Messages/s and MB/s of payload for messages carrying ``size`` bytes of text."""
    big = Settings(initial_window=16 * 1024 * 1024, connection_window=64 * 1024 * 1024)
    client, server = Connection(Role.CLIENT, big), Connection(Role.SERVER, big)
    for m in client.data_to_send():
        server.receive_data(m)
    for m in server.data_to_send():
        client.receive_data(m)
    sid = client.open_stream({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}, end=True)
    for m in client.data_to_send():
        server.receive_data(m)
    delta = {
        "jsonrpc": "2.0",
        "method": "notifications/tools/partial_result",
        "params": {
            "partialResultToken": 1,
            "seq": 0,
            "event": "delta",
            "content": [{"type": "text", "text": "t" * size}],
        },
    }
    batch = 64
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and sent < max_messages:
        for _ in range(batch):
            server.send_message(sid, delta)
        sent += batch
        for m in server.data_to_send():
            for e in client.receive_data(m):
                if isinstance(e, MessageReceived):
                    client.acknowledge_received(e.stream_id, e.flow_controlled_length)
        for m in client.data_to_send():
            server.receive_data(m)
    elapsed = time.perf_counter() - start
    return sent / elapsed, sent * size / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default 3)")
    args = parser.parse_args()
    print(f"{'case':<16} {'frames/s (median)':>18} {'min-max':>20} {'MB/s':>8}")
    for name, size in CASES.items():
        results = [run(size, args.seconds) for _ in range(args.repeats)]
        rates = [r[0] for r in results]
        mbs = statistics.median(r[1] for r in results)
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(f"{name:<16} {statistics.median(rates):>18,.0f} {spread:>20} {mbs:>8.1f}")


if __name__ == "__main__":
    main()
