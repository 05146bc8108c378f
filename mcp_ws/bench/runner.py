"""Run every scenario against every target, repeat, and summarise.

The result is a `Report`: raw figures per repeat, failures as text, and `headlines`, the
ratio of mcp-ws to the best stock transport for each scenario, checked against the
project's targets.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any

import anyio

from .scale import connections, streams
from .scenarios import (
    INTERLEAVED_BLOCKS,
    Figures,
    Scenario,
    Sizes,
    interleaved_round_trips,
    scenarios,
)
from .targets import START_TIMEOUT, TARGETS, Running, Target, cpu_placement, running

__all__ = ["Headline", "Report", "run_bench"]

STEP = Callable[[str], AbstractContextManager[object]]
Check = Callable[[float | None, float | None, Sizes], bool | None]
"""Whether a headline meets its target: (our figure, ratio to stock, the run's sizes)."""


@dataclass
class Report:
    """Everything one bench run measured."""

    sizes: Sizes
    repeats: int
    backend: str
    machine: dict[str, Any] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    #: scenario -> target label -> figures of each repeat that succeeded
    samples: dict[str, dict[str, list[Figures]]] = field(default_factory=dict)
    #: scenario -> target label -> the last failure
    errors: dict[str, dict[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, scenario: str, label: str, figures: Figures) -> None:
        self.samples.setdefault(scenario, {}).setdefault(label, []).append(figures)

    def fail(self, scenario: str, label: str, error: str) -> None:
        self.errors.setdefault(scenario, {})[label] = error

    def median(self, scenario: str, label: str, metric: str) -> float | None:
        """The median of ``metric`` over repeats (None if it never succeeded)."""
        spread = self.spread(scenario, label, metric)
        return spread[0] if spread else None

    def spread(self, scenario: str, label: str, metric: str) -> tuple[float, float, float] | None:
        """(median, min, max) of ``metric`` over repeats."""
        runs = self.samples.get(scenario, {}).get(label, [])
        values = [run[metric] for run in runs if metric in run]
        if not values:
            return None
        return statistics.median(values), min(values), max(values)

    def failed(self, scenario: str, label: str) -> str | None:
        """Why ``label`` failed ``scenario`` if it never succeeded."""
        if self.samples.get(scenario, {}).get(label):
            return None
        return self.errors.get(scenario, {}).get(label)

    def headlines(self) -> list[Headline]:
        return [h for h in (spec.judge(self) for spec in HEADLINES) if h is not None]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: settings, machine, per-scenario figures, headlines."""
        results: dict[str, Any] = {}
        for scenario in self.titles:
            rows: dict[str, Any] = {}
            labels = set(self.samples.get(scenario, {})) | set(self.errors.get(scenario, {}))
            for label in sorted(labels, key=_order):
                runs = self.samples.get(scenario, {}).get(label, [])
                row: dict[str, Any] = {}
                for metric in runs[0] if runs else {}:
                    med, lo, hi = self.spread(scenario, label, metric) or (0.0, 0.0, 0.0)
                    row[metric] = {
                        "median": med,
                        "min": lo,
                        "max": hi,
                        "samples": [run[metric] for run in runs],
                    }
                if label in self.errors.get(scenario, {}):
                    row["error"] = self.errors[scenario][label]
                rows[label] = row
            results[scenario] = {"title": self.titles[scenario], "targets": rows}
        return {
            "repeats": self.repeats,
            "backend": self.backend,
            "seconds": round(self.seconds, 1),
            "sizes": asdict(self.sizes),
            "machine": self.machine,
            "results": results,
            "headlines": [asdict(h) for h in self.headlines()],
        }


def _order(label: str) -> int:
    labels = [t.label for t in TARGETS]
    return labels.index(label) if label in labels else len(labels)


@dataclass(frozen=True, slots=True)
class Headline:
    """One figure of mcp-ws set against the best stock transport, and its target."""

    scenario: str
    metric: str
    what: str
    ours: float | None
    ours_label: str
    stock: float | None
    stock_label: str
    ratio: float | None
    target: str
    met: bool | None


@dataclass(frozen=True, slots=True)
class _Spec:
    scenario: str
    metric: str
    what: str
    higher_better: bool
    target: str
    check: Check
    compare: bool = True  # False: an absolute figure of mcp-ws, no stock ratio

    def judge(self, report: Report) -> Headline | None:
        if self.scenario not in report.titles:
            return None
        # Against stock: our best era. An absolute bound: our worst era must meet it.
        ours = self._best(report, [t for t in TARGETS if t.ours], worst=not self.compare)
        stock = self._best(report, [t for t in TARGETS if t.stock]) if self.compare else ("", None)
        ratio = None
        if ours[1] is not None and stock[1] is not None and stock[1] > 0:
            ratio = ours[1] / stock[1]
        return Headline(
            scenario=self.scenario,
            metric=self.metric,
            what=self.what,
            ours=ours[1],
            ours_label=ours[0],
            stock=stock[1],
            stock_label=stock[0],
            ratio=ratio,
            target=self.target,
            met=self.check(ours[1], ratio, report.sizes),
        )

    def _best(
        self, report: Report, targets: list[Target], *, worst: bool = False
    ) -> tuple[str, float | None]:
        found = [
            (t.label, v)
            for t in targets
            if (v := report.median(self.scenario, t.label, self.metric)) is not None
        ]
        if not found:
            return "", None
        pick = max if self.higher_better != worst else min
        return pick(found, key=lambda item: item[1])


def _ratio_at_most(bound: float) -> Check:
    return lambda ours, ratio, sizes: None if ratio is None else ratio <= bound


def _ratio_at_least(bound: float) -> Check:
    return lambda ours, ratio, sizes: None if ratio is None else ratio >= bound


def _below(bound: float) -> Check:
    return lambda ours, ratio, sizes: ours is not None and ours < bound


def _at_most(bound: float) -> Check:
    return lambda ours, ratio, sizes: ours is not None and ours <= bound


def _works(ours: float | None, ratio: float | None, sizes: Sizes) -> bool:
    return ours is not None


def _all_of(size: str) -> Check:
    """Every connection or call of the scale run (``Sizes.<size>`` of them) was served."""
    return lambda ours, ratio, sizes: ours is not None and ours >= getattr(sizes, size)


def _no_target(ours: float | None, ratio: float | None, sizes: Sizes) -> None:
    return None


MEMORY_BOUND_MIB = 16.0
"""Memory growth counted as bounded: the windows (4 MiB connection, 256 KiB per stream)
plus room for the allocator and the frames in hand."""

_BOUNDED = _below(MEMORY_BOUND_MIB)

HEADLINES = (
    _Spec("rtt_interleaved", "p50_ms", "round trip p50", False, "<= 0.6x", _ratio_at_most(0.6)),
    _Spec("rtt", "p99_ms", "round trip p99", False, "", _no_target),
    _Spec("rtt", "cpu_ms", "CPU per call", False, "", _no_target),
    _Spec(
        "throughput", "calls_per_s", "calls/s, 64 in flight", True, ">= 1.5x", _ratio_at_least(1.5)
    ),
    _Spec("streaming", "deltas_per_s", "deltas/s", True, ">= 10x", _ratio_at_least(10)),
    _Spec("streaming", "first_ms", "first delta", False, "< 1 ms", _below(1.0)),
    _Spec("hol", "ratio", "HOL p99, loaded/idle", False, "<= 3", _at_most(3.0), False),
    _Spec("fanout", "streams", "fan-out streams", True, ">= 5x", _ratio_at_least(5)),
    _Spec("memory", "server_mib", "server RSS growth, MiB", False, "bounded", _BOUNDED, False),
    _Spec("memory", "client_mib", "client RSS growth, MiB", False, "bounded", _BOUNDED, False),
    _Spec("large_64mib", "ms", "64 MiB result, ms", False, "works", _works),
    _Spec(
        "connections", "answered", "connections served", True, "all", _all_of("connections"), False
    ),
    _Spec(
        "streams", "in_flight", "calls in flight at once", True, "all", _all_of("streams"), False
    ),
)


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mcp": version("mcp"),
        "mcp_ws": version("mcp-ws-streaming"),
    }


async def _run_target(
    report: Report, target: Target, server: Running, todo: list[Scenario], step: STEP
) -> None:
    """Run ``todo`` on one client, opening a fresh one after a failure."""
    pending = list(todo)
    while pending:
        ran = False
        try:
            with anyio.fail_after(60 + sum(s.limit for s in pending)):
                async with server.client(target) as client:
                    while pending:
                        scenario = pending[0]
                        with step(f"{target.label}: {scenario.title}"):
                            ran = True
                            pending.pop(0)
                            try:
                                with anyio.fail_after(scenario.limit):
                                    figures = await scenario.run(client, target, report.sizes)
                            except Exception as exc:
                                why = _describe(exc, scenario.limit)
                                report.fail(scenario.key, target.label, why)
                                break
                            report.add(scenario.key, target.label, figures)
        except Exception as exc:
            if not ran:
                _fail_all(report, [target], pending, step, f"cannot connect: {_describe(exc)}")
                return


def _fail_all(
    report: Report, targets: list[Target], scenarios: list[Scenario], step: STEP, why: str
) -> None:
    """Record ``why`` as the failure of every scenario of every target (each a step)."""
    for target in targets:
        for scenario in scenarios:
            with step(f"{target.label}: {scenario.title}"):
                report.fail(scenario.key, target.label, why)


def _describe(exc: BaseException, limit: float | None = None) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {limit:g} s" if limit else "timed out"
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200]


async def run_bench(
    *,
    sizes: Sizes,
    repeats: int,
    targets: tuple[Target, ...] = TARGETS,
    scale: bool = True,
    only: set[str] | None = None,
    step: STEP = lambda name: nullcontext(),
    backend: str = "asyncio",
    pin: bool = True,
) -> Report:
    """Measure every target ``repeats`` times; ``step(name)`` wraps each step (progress).

    ``only`` limits the per-target scenarios to those keys; ``scale`` adds the mcp-ws
    scale runs (many connections, many streams). With ``pin`` (and two CPUs or more),
    this process keeps to one CPU and every server to another, as they would on
    separate machines: left to itself, the kernel sometimes runs both on one CPU, and a
    streaming figure then halves for whichever transport it happens to.
    """
    report = Report(sizes=sizes, repeats=repeats, backend=backend, machine=_machine())
    placement = cpu_placement() if pin else None
    if placement is None:
        return await _run_all(
            report, targets=targets, scale=scale, only=only, step=step, server_cpu=None
        )
    client_cpu, server_cpu = placement
    report.machine["pinned"] = {"client": client_cpu, "servers": server_cpu}
    everywhere = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {client_cpu})
    try:
        return await _run_all(
            report, targets=targets, scale=scale, only=only, step=step, server_cpu=server_cpu
        )
    finally:
        os.sched_setaffinity(0, everywhere)


async def _run_all(
    report: Report,
    *,
    targets: tuple[Target, ...],
    scale: bool,
    only: set[str] | None,
    step: STEP,
    server_cpu: int | None,
) -> Report:
    sizes, repeats = report.sizes, report.repeats
    todo = _selected(sizes, only)
    report.titles = {s.key: s.title for s in todo}
    interleave = any(s.key == "rtt" for s in todo) and len(targets) > 1
    if interleave:  # shown right after the plain round trip
        block = max(1, sizes.round_trips // INTERLEAVED_BLOCKS)
        titles = list(report.titles.items())
        at = [key for key, _ in titles].index("rtt") + 1
        titles.insert(at, (INTERLEAVED, f"round trip, transports taking turns every {block} calls"))
        report.titles = dict(titles)
    if scale:
        report.titles["connections"] = f"{sizes.connections:,} connections to one server"
        report.titles["streams"] = f"{sizes.streams:,} calls in flight on one connection"
    started = time.perf_counter()
    kinds = [k for k in ("ws", "stdio", "http", "inproc") if any(t.kind == k for t in targets)]
    for _ in range(repeats):
        for kind in kinds:
            mine = [t for t in targets if t.kind == kind]
            done: set[str] = set()
            try:
                async with running(kind, server_cpu) as server:
                    for target in mine:
                        await _run_target(report, target, server, todo, step)
                        done.add(target.label)
                    if kind == "ws" and scale and any(t.ours for t in targets):
                        await _scale(report, server, step)
            except (OSError, RuntimeError, TimeoutError) as exc:  # the server did not start
                why = f"the server did not start: {_describe(exc, START_TIMEOUT)}"
                _fail_all(report, [t for t in mine if t.label not in done], todo, step, why)
        if interleave:
            await _interleaved(report, targets, kinds, step, server_cpu)
    report.seconds = time.perf_counter() - started
    return report


INTERLEAVED = "rtt_interleaved"


async def _interleaved(
    report: Report, targets: tuple[Target, ...], kinds: list[str], step: STEP, cpu: int | None
) -> None:
    """Every server up at once and a client on each target, round trips taking turns
    (`interleaved_round_trips`): the figure that another run reproduces."""
    with step("every transport in turn: round trips"):
        try:
            with anyio.fail_after(120):
                async with AsyncExitStack() as stack:
                    servers = {}
                    for kind in kinds:
                        servers[kind] = await stack.enter_async_context(running(kind, cpu))
                    clients = {}
                    for target in targets:
                        client = servers[target.kind].client(target)
                        clients[target.label] = await stack.enter_async_context(client)
                    figures = await interleaved_round_trips(clients, report.sizes)
        except Exception as exc:
            for target in targets:
                report.fail(INTERLEAVED, target.label, _describe(exc, 120))
            return
    for label, found in figures.items():
        report.add(INTERLEAVED, label, found)


async def _scale(report: Report, server: Running, step: STEP) -> None:
    label = "mcp-ws"
    runs: list[tuple[str, Callable[[Running, Sizes], Awaitable[Figures]]]] = [
        ("connections", connections),
        ("streams", streams),
    ]
    for key, run in runs:
        with step(f"{label}: {report.titles[key]}"):
            try:
                with anyio.fail_after(120):
                    report.add(key, label, await run(server, report.sizes))
            except Exception as exc:
                report.fail(key, label, _describe(exc, 120))


def _selected(sizes: Sizes, only: set[str] | None) -> list[Scenario]:
    return [s for s in scenarios(sizes) if only is None or s.key in only]


def steps_per_repeat(
    sizes: Sizes,
    targets: tuple[Target, ...] = TARGETS,
    scale: bool = True,
    only: set[str] | None = None,
) -> int:
    """How many steps one repeat takes (for a progress bar)."""
    selected = _selected(sizes, only)
    interleave = any(s.key == "rtt" for s in selected) and len(targets) > 1
    return len(targets) * len(selected) + (2 if scale else 0) + (1 if interleave else 0)
