"""What resume costs, and how fast it recovers (docs/protocol.md section 9).

Run: ``python bench/resume.py [--repeats 3] [--calls 2000] [--streams 6] [--cuts 40]``.

The bench app (``mcp_ws.bench.app``) is served by ``mcp-ws serve`` in a child process;
this process holds two client sessions to it at once, one that resumes and one that does
not (``connect(resume=False)``: no positions, no replay buffer), and they take turns:

- **round trip**: a small ``tools/call`` (``echo``), in blocks of 50 calls per session,
  who goes first alternating; the median per call of each;
- **deltas per second**: a 20,000-delta stream (``stream``), one per session in turn;
- **recovery**: a third session, through a relay on loopback (``tests/cutproxy.py``),
  reads a stream while the relay cuts its connection every 50 to 150 ms; timed from the
  cut to the end of the resume (the server's answer processed: ``LinkState.RECOVERED``)
  and to the next delta that arrives after it. Twice: a stream paced at 200 deltas a
  second (``paced``: a chat answer's pace), and one that never pauses (``stream``:
  the client is then busy with what arrived before the cut, and the figure says so).

The machine's speed drifts within a minute (bench/RESULTS.md), so the two sessions
alternate every block and the ratio is taken within each repeat. Every loop is bounded
in count and in time; the server ends with this process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp.client.session import ClientSession

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcp_ws  # noqa: E402
from mcp_ws import LinkState  # noqa: E402
from tests.cutproxy import cut_proxy  # noqa: E402

BLOCK = 50


async def serve() -> tuple[anyio.abc.Process, str]:
    command = [sys.executable, "-m", "mcp_ws", "serve", "mcp_ws.bench.app:build_bench_app"]
    process = await anyio.open_process([*command, "--port", "0", "--log-level", "warning"])
    assert process.stdout is not None
    with anyio.fail_after(20):
        line = (await process.stdout.receive()).decode()
    return process, line.split(" at ", 1)[1].split()[0]


async def round_trips(sessions: dict[str, ClientSession], calls: int) -> dict[str, float]:
    """Median seconds per call of each session, the sessions taking turns by blocks."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for block in range(max(calls // BLOCK, 1)):
        order = names if block % 2 == 0 else names[::-1]
        for name in order:
            session = sessions[name]
            for _ in range(BLOCK):
                started = time.perf_counter()
                await session.call_tool("echo", {"text": "x"})
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


async def deltas_per_second(sessions: dict[str, ClientSession], streams: int) -> dict[str, float]:
    """Median deltas per second of a 20,000-delta stream, the sessions taking turns."""
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for turn in range(streams):
        for name in names if turn % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            count = 0
            async with mcp_ws.stream_tool(sessions[name], "stream", {"count": 20000}) as stream:
                async for event in stream:
                    count += isinstance(event, mcp_ws.Delta)
            assert count == 20000
            rates[name].append(count / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


async def recovery(url: str, cuts: int, paced: bool) -> tuple[list[float], list[float]]:
    """Seconds from each cut to the resume done, and to the next delta after it."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    to_resumed: list[float] = []
    to_delta: list[float] = []
    recovered = anyio.Event()

    def on_link(state: LinkState) -> None:
        if state is LinkState.RECOVERED:
            recovered.set()

    async with (
        cut_proxy(port, seed=11) as proxy,
        mcp_ws.connect(proxy.url(), on_link=on_link) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        arrived = {"at": 0.0}
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                # Either ends when cancelled, below.
                if paced:
                    tool, args = "paced", {"count": 10**6, "rate": 200.0}
                else:
                    tool, args = "stream", {"count": 10**8, "size": 8}
                async with mcp_ws.stream_tool(session, tool, args) as stream:
                    async for event in stream:
                        if isinstance(event, mcp_ws.Delta):
                            arrived["at"] = time.perf_counter()

            tg.start_soon(reader)
            await anyio.sleep(0.5)
            for _ in range(cuts):
                await anyio.sleep(0.05 + 0.1 * (len(to_resumed) % 10) / 10)
                recovered = anyio.Event()
                cut = time.perf_counter()
                proxy.cut()
                with anyio.fail_after(10):
                    await recovered.wait()
                to_resumed.append(time.perf_counter() - cut)
                # The next delta after the resume (those in flight at the cut were
                # handled before the resume's answer, in order).
                resumed_at = time.perf_counter()
                with anyio.fail_after(10):
                    while arrived["at"] <= resumed_at:
                        await anyio.sleep(0.0002)
                to_delta.append(arrived["at"] - cut)
            tg.cancel_scope.cancel()
    return to_resumed, to_delta


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def main(args: argparse.Namespace) -> None:
    process, url = await serve()
    try:
        async with (
            mcp_ws.connect(url) as (read_on, write_on),
            ClientSession(read_on, write_on) as on,
            mcp_ws.connect(url, resume=False) as (read_off, write_off),
            ClientSession(read_off, write_off) as off,
        ):
            await on.initialize()
            await off.initialize()
            sessions = {"resume on": on, "resume off": off}
            for repeat in range(args.repeats):
                rtt = await round_trips(sessions, args.calls)
                rate = await deltas_per_second(sessions, args.streams)
                on_rtt, off_rtt = rtt["resume on"], rtt["resume off"]
                on_rate, off_rate = rate["resume on"], rate["resume off"]
                print(
                    f"repeat {repeat + 1}: round trip {on_rtt * 1e3:.3f} ms on, "
                    f"{off_rtt * 1e3:.3f} ms off ({on_rtt / off_rtt:.3f}x); deltas/s "
                    f"{on_rate:,.0f} on, {off_rate:,.0f} off ({on_rate / off_rate:.3f}x)",
                    flush=True,
                )
        for paced in (True, False):
            to_resumed, to_delta = await recovery(url, args.cuts, paced)
            ms = {
                name: (percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3)
                for name, values in (("resumed", to_resumed), ("next delta", to_delta))
            }
            kind = "paced" if paced else "saturating"
            figures = "; ".join(f"{n} p50 {a:.1f} ms, p99 {b:.1f} ms" for n, (a, b) in ms.items())
            print(f"recovery, {kind} stream, {len(to_resumed)} cuts: {figures}", flush=True)
    finally:
        process.kill()
        await process.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000, help="round trips per session")
    parser.add_argument("--streams", type=int, default=6, help="streams per session")
    parser.add_argument("--cuts", type=int, default=40)
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse())
