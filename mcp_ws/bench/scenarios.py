"""What is measured: each scenario drives one ``mcp.Client`` and returns its figures.

Every scenario is bounded in calls and in time. Stock transports stream the only way
stock MCP can, with progress notifications; mcp-ws uses its native partial results.
A "slow reader" takes one delta per ``pace`` seconds: on mcp-ws it simply reads slowly
(`stream_tool`), on stock MCP the progress callback waits its turn on a lock, because the
SDK runs each progress callback in a task of its own.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import Client

from ..sdk.stream_tool import Completed, Delta, stream_tool
from .app import memory_kib
from .targets import Target

__all__ = ["Figures", "Scenario", "Sizes", "interleaved_round_trips", "scenarios"]

SMALL_TEXT = "x" * 48
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each scenario does (``--quick`` uses smaller ones)."""

    round_trips: int = 1000
    throughput_calls: int = 3200
    in_flight: int = 64
    deltas: int = 10_000
    first_deltas: int = 50  # short streams whose first delta is timed (the median counts)
    hol_calls: int = 300
    memory_seconds: float = 3.0
    large: tuple[int, ...] = (1 * MiB, 16 * MiB, 64 * MiB)
    connections: int = 1000
    streams: int = 10_000
    large_limit: float = 60.0  # seconds a large result may take before it counts as failed
    fanout_max: int = 640  # the most concurrent paced streams the fan-out run tries
    fanout_seconds: float = 1.5  # how long each step of the fan-out run streams

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            round_trips=300,
            throughput_calls=960,
            deltas=2000,
            first_deltas=20,
            hol_calls=100,
            memory_seconds=1.0,
            connections=200,
            streams=2000,
            large_limit=10.0,
            fanout_max=160,
            fanout_seconds=1.0,
        )


Figures = dict[str, float]


async def _server_stats(client: Client) -> dict[str, Any]:
    result = await client.call_tool("stats", {})
    stats = result.structured_content
    if not isinstance(stats, dict):
        raise TypeError("the bench server's stats tool gave no structured result")
    return stats


class _Cpu:
    """CPU seconds spent by this process and the server's since `start`."""

    def __init__(self, client: Client, stats: dict[str, Any]) -> None:
        self.client = client
        self.separate = stats["pid"] != os.getpid()
        self.start_server = float(stats["cpu"])
        self.start_own = time.process_time()

    @classmethod
    async def start(cls, client: Client) -> _Cpu:
        return cls(client, await _server_stats(client))

    async def spent(self) -> float:
        own = time.process_time() - self.start_own
        stats = await _server_stats(self.client)
        return own + (float(stats["cpu"]) - self.start_server if self.separate else 0.0)


async def _settle(client: Client) -> None:
    """A full garbage collection on both sides before a timed phase of small calls.

    A gen-2 collection takes 15-40 ms here; landing inside a phase of 100 calls, it alone
    would be that phase's p99, whatever the transport.
    """
    gc.collect()
    await client.call_tool("collect", {})


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def _round_trips(client: Client, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await client.call_tool("echo", {"text": SMALL_TEXT})
        times.append(time.perf_counter() - started)
    return times


async def round_trip(client: Client, target: Target, sizes: Sizes) -> Figures:
    """Sequential small ``tools/call``: p50 and p99 in ms, CPU (both sides) per call."""
    await _round_trips(client, 30)  # warm up
    await _settle(client)
    cpu = await _Cpu.start(client)
    times = await _round_trips(client, sizes.round_trips)
    spent = await cpu.spent()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": _p(times, 0.99) * 1000,
        "cpu_ms": spent / sizes.round_trips * 1000,
    }


INTERLEAVED_BLOCKS = 20
"""Blocks of round trips per target in the interleaved run (``round_trips`` in all)."""


async def interleaved_round_trips(clients: dict[str, Client], sizes: Sizes) -> dict[str, Figures]:
    """Round trips on every client in turn: `INTERLEAVED_BLOCKS` blocks each, the
    targets taking turns block by block (who goes first rotates). The machine's own
    speed drifts over seconds (see bench/RESULTS.md); blocks a few tens of milliseconds
    long see the same machine, so the ratio between targets holds from run to run where
    one target's whole run after another's does not. Returns ``p50_ms`` per label."""
    for client in clients.values():
        await _round_trips(client, 30)  # warm up
        await _settle(client)
    each = max(1, sizes.round_trips // INTERLEAVED_BLOCKS)
    times: dict[str, list[float]] = {label: [] for label in clients}
    order = list(clients)
    for block in range(INTERLEAVED_BLOCKS):
        turn = block % len(order)
        for label in order[turn:] + order[:turn]:
            times[label] += await _round_trips(clients[label], each)
    return {label: {"p50_ms": statistics.median(t) * 1000} for label, t in times.items()}


async def throughput(client: Client, target: Target, sizes: Sizes) -> Figures:
    """Calls per second with ``in_flight`` calls outstanding on one session."""
    each = max(1, sizes.throughput_calls // sizes.in_flight)

    async def worker() -> None:
        for _ in range(each):
            await client.call_tool("echo", {"text": SMALL_TEXT})

    async with anyio.create_task_group() as tg:  # warm up: every worker once
        for _ in range(sizes.in_flight):
            tg.start_soon(client.call_tool, "echo", {"text": SMALL_TEXT})
    cpu = await _Cpu.start(client)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(sizes.in_flight):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    spent = await cpu.spent()
    calls = each * sizes.in_flight
    return {"calls_per_s": calls / elapsed, "cpu_ms": spent / calls * 1000}


class _Reader:
    """Receives one stream's deltas (native or progress), optionally at a slow pace."""

    def __init__(self, pace: float = 0.0) -> None:
        self.pace = pace
        self.count = 0
        self.first = 0.0
        self.started = time.perf_counter()
        self._lock = anyio.Lock()
        self.flowing = anyio.Event()

    async def take(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter() - self.started
            self.flowing.set()
        if self.pace:
            await anyio.sleep(self.pace)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        async with self._lock:  # the SDK runs each callback in its own task
            await self.take()


async def _consume(client: Client, target: Target, count: int, size: int, reader: _Reader) -> None:
    """Run one ``count``-delta stream to ``reader``: native on mcp-ws, else progress."""
    arguments = {"count": count, "size": size}
    if target.ours:
        async with stream_tool(client, "stream", arguments) as stream:
            async for event in stream:
                if isinstance(event, Delta):
                    await reader.take()
        if not isinstance(stream.outcome, Completed):
            raise RuntimeError(f"the stream ended with {stream.outcome!r}")
    else:
        await client.call_tool("progress", arguments, progress_callback=reader.on_progress)


FIRST_DELTA_STREAM = 10  # deltas in each stream whose first delta is timed


async def streaming(client: Client, target: Target, sizes: Sizes) -> Figures:
    """One ``deltas``-delta stream read as fast as it comes: deltas/s and CPU per delta.
    First delta: the median, over ``first_deltas`` short streams, of the time from the
    call to its first delta (the tool produces deltas one by one, so a stream's length
    does not change when its first delta comes; one sample alone is mostly noise)."""
    await _consume(client, target, min(sizes.deltas, 1000), 8, _Reader())  # warm up
    cpu = await _Cpu.start(client)
    reader = _Reader()
    await _consume(client, target, sizes.deltas, 8, reader)
    elapsed = time.perf_counter() - reader.started
    spent = await cpu.spent()
    if reader.count != sizes.deltas:
        raise RuntimeError(f"{reader.count} of {sizes.deltas} deltas arrived")
    firsts = [reader.first]
    for _ in range(sizes.first_deltas - 1):
        short = _Reader()
        await _consume(client, target, FIRST_DELTA_STREAM, 8, short)
        firsts.append(short.first)
    return {
        "deltas_per_s": reader.count / elapsed,
        "first_ms": statistics.median(firsts) * 1000,
        "cpu_us": spent / reader.count * 1e6,
    }


BULK_SIZE = 64 * 1024
BULK_COUNT = 16384  # 1 GiB offered at most
SLOW_PACE = 0.01


async def _with_bulk(
    client: Client, target: Target, work: Callable[[], Awaitable[Figures]]
) -> Figures:
    """Run ``work`` while a bulk stream of 64 KiB deltas goes to a slow reader."""
    reader = _Reader(pace=SLOW_PACE)
    async with anyio.create_task_group() as tg:

        async def bulk() -> None:
            await _consume(client, target, BULK_COUNT, BULK_SIZE, reader)

        tg.start_soon(bulk)
        with anyio.fail_after(10):
            await reader.flowing.wait()
        figures = await work()
        tg.cancel_scope.cancel()
    return figures


async def head_of_line(client: Client, target: Target, sizes: Sizes) -> Figures:
    """p99 of small calls alone, then while a bulk stream goes to a slow reader."""
    await _round_trips(client, 10)  # warm up
    await _settle(client)
    idle = await _round_trips(client, sizes.hol_calls)

    async def loaded() -> Figures:
        await _settle(client)
        times = await _round_trips(client, sizes.hol_calls)
        return {"loaded_p99_ms": _p(times, 0.99) * 1000}

    figures = await _with_bulk(client, target, loaded)
    figures["idle_p99_ms"] = _p(idle, 0.99) * 1000
    figures["ratio"] = figures["loaded_p99_ms"] / figures["idle_p99_ms"]
    return figures


async def memory(client: Client, target: Target, sizes: Sizes) -> Figures:
    """Peak RSS growth of the server and this process while a bulk producer outruns a
    slow reader for ``memory_seconds``."""
    pid = int((await _server_stats(client))["pid"])
    separate = pid != os.getpid()
    base_server = memory_kib(pid)[0]
    base_client = memory_kib()[0]
    peak = {"server": base_server, "client": base_client}

    async def watch() -> Figures:
        deadline = time.monotonic() + sizes.memory_seconds
        while time.monotonic() < deadline:
            peak["server"] = max(peak["server"], memory_kib(pid)[0])
            peak["client"] = max(peak["client"], memory_kib()[0])
            await anyio.sleep(0.02)
        return {}

    await _with_bulk(client, target, watch)
    server_growth = (peak["server"] - base_server) / 1024 if separate else 0.0
    return {"server_mib": server_growth, "client_mib": (peak["client"] - base_client) / 1024}


def large(size: int) -> Callable[[Client, Target, Sizes], Awaitable[Figures]]:
    """A scenario: one result of ``size`` bytes (a tool returning that much text)."""

    async def run(client: Client, target: Target, sizes: Sizes) -> Figures:
        started = time.perf_counter()
        result = await client.call_tool("blob", {"size": size})
        elapsed = time.perf_counter() - started
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        if result.is_error or len(text) != size:
            raise RuntimeError(f"got {len(text)} of {size} bytes")
        return {"ms": elapsed * 1000, "mib_per_s": size / MiB / elapsed}

    return run


FANOUT_RATE = 40.0  # deltas per second per stream: a language model's pace
FANOUT_DELAY = 0.025  # seconds: the 99th percentile delta delay a step may reach
FANOUT_START = 10  # streams in the first step; each next step doubles them
FANOUT_BISECT = 3  # halvings between the last step met and the first missed


async def _paced_delays(
    client: Client, target: Target, streams: int, seconds: float
) -> tuple[list[float], int]:
    """Run ``streams`` paced streams at once (starts spread over one delta's interval);
    returns every delta's delay past its due time, and how many streams failed."""
    count = max(2, int(FANOUT_RATE * seconds))
    arguments = {"count": count, "rate": FANOUT_RATE}
    delays: list[float] = []
    failed = 0

    def arrived(text: str | None) -> None:
        due = float((text or "").split()[0])
        delays.append(time.monotonic() - due)

    async def one(offset: float) -> None:
        nonlocal failed
        await anyio.sleep(offset)
        before = len(delays)
        try:
            if target.ours:
                async with stream_tool(client, "paced", arguments) as stream:
                    async for event in stream:
                        if isinstance(event, Delta):
                            arrived(event.text)
                if not isinstance(stream.outcome, Completed):
                    failed += 1
            else:

                async def on_progress(
                    progress: float, total: float | None, message: str | None
                ) -> None:
                    arrived(message)

                await client.call_tool("paced_progress", arguments, progress_callback=on_progress)
        except Exception:  # a stream that failed counts, whatever the transport said
            failed += 1
            return
        if len(delays) - before < count:
            failed += 1  # not every delta came

    async with anyio.create_task_group() as tg:
        for i in range(streams):
            tg.start_soon(one, (i % 25) / 25 / FANOUT_RATE)
    return delays, failed


async def fanout(client: Client, target: Target, sizes: Sizes) -> Figures:
    """The most concurrent streams of 40 deltas/s one server sustains with the 99th
    percentile delta delay (arrival past the time the delta was due) at most 25 ms:
    10, 20, 40, ... streams until a step misses (a failed stream misses too), then
    `FANOUT_BISECT` halvings of the gap between the last step met and the first missed.
    Counts are rounded to fives."""
    await _paced_delays(client, target, 2, 0.2)  # warm up

    async def meets(streams: int) -> float | None:
        await _settle(client)
        delays, failed = await _paced_delays(client, target, streams, sizes.fanout_seconds)
        p99 = _p(delays, 0.99) if delays else float("inf")
        return None if failed or p99 > FANOUT_DELAY else p99 * 1000

    best, best_p99, missed = 0, 0.0, 0
    tried = FANOUT_START
    while tried <= sizes.fanout_max:
        p99 = await meets(tried)
        if p99 is None:
            missed = tried
            break
        best, best_p99 = tried, p99
        tried *= 2
    for _ in range(FANOUT_BISECT if best and missed else 0):
        middle = (best + missed) // 2 // 5 * 5
        if middle <= best or middle >= missed:
            break
        p99 = await meets(middle)
        if p99 is None:
            missed = middle
        else:
            best, best_p99 = middle, p99
    return {"streams": float(best), "p99_ms": best_p99}


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named measurement and the time it may take."""

    key: str
    title: str
    run: Callable[[Client, Target, Sizes], Awaitable[Figures]]
    limit: float


def scenarios(sizes: Sizes) -> list[Scenario]:
    """The per-target scenarios, in the order they run (large results last: they raise
    the processes' peak memory)."""
    found = [
        Scenario("rtt", "round trip of a small tools/call", round_trip, 60),
        Scenario("throughput", f"calls/s, {sizes.in_flight} in flight", throughput, 60),
        Scenario("streaming", f"a {sizes.deltas:,}-delta stream", streaming, 90),
        Scenario("hol", "small calls beside a bulk stream to a slow reader", head_of_line, 60),
        Scenario("memory", "a producer outrunning its reader", memory, 30),
        Scenario(
            "fanout",
            "fan-out: concurrent 40 deltas/s streams at p99 delay <= 25 ms",
            fanout,
            120,
        ),
    ]
    found += [
        Scenario(f"large_{mib}mib", f"a {mib} MiB result", large(mib * MiB), sizes.large_limit)
        for mib in (size // MiB for size in sizes.large)
    ]
    return found
