"""``mcp-ws bench``: the same MCPServer over mcp-ws and the SDK's own transports, side by side."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..bench.render import markdown, render
from ..bench.runner import run_bench, steps_per_repeat
from ..bench.scenarios import MiB, Sizes, scenarios
from ..bench.targets import TARGETS
from .common import fail

__all__ = ["add_bench_options", "bench_command"]

KINDS = ("ws", "stdio", "http", "inproc")


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``mcp-ws bench``."""
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts, one repeat (about 1.5 min)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument(
        "--markdown", action="store_true", help="print the results as Markdown tables"
    )
    parser.add_argument("--save", metavar="FILE", help="also write the JSON results to FILE")
    parser.add_argument(
        "--load", metavar="FILE", help="print the results saved in FILE instead of running"
    )
    parser.add_argument("--repeats", type=int, help="runs of everything (default 3, quick 1)")
    parser.add_argument(
        "--transports",
        default=",".join(KINDS),
        metavar="LIST",
        help="comma-separated among ws, stdio, http, inproc (default: all)",
    )
    parser.add_argument(
        "--scenarios",
        metavar="LIST",
        help="comma-separated among rtt, throughput, streaming, hol, memory, fanout, large, scale",
    )
    parser.add_argument("--round-trips", type=int, metavar="N", help="calls timed one by one")
    parser.add_argument("--deltas", type=int, metavar="N", help="deltas in the streaming run")
    parser.add_argument("--connections", type=int, metavar="N", help="connections in the scale run")
    parser.add_argument("--streams", type=int, metavar="N", help="calls in flight in the scale run")
    parser.add_argument(
        "--large", metavar="MIB,...", help="result sizes in whole MiB (default 1,16,64)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the kernel place client and servers (default: one CPU each, when there are two)",
    )


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    changes: dict[str, object] = {}
    for field in ("round_trips", "deltas", "connections", "streams"):  # option = Sizes field
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                fail(f"--{field.replace('_', '-')} must be at least 1", exit_code=2)
            changes[field] = value
    if args.round_trips is not None:
        changes["hol_calls"] = max(args.round_trips // 3, 1)
        changes["throughput_calls"] = max(args.round_trips * 3, sizes.in_flight)
    if args.large is not None:
        try:
            mib = [int(v) for v in args.large.split(",") if v.strip()]
        except ValueError:
            fail(f"--large takes whole MiB separated by commas, got {args.large!r}", exit_code=2)
        if any(v <= 0 for v in mib):
            fail("--large sizes must be positive", exit_code=2)
        changes["large"] = tuple(v * MiB for v in mib)
    return dataclasses.replace(sizes, **changes)  # type: ignore[arg-type]


def _choice(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    picked = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        fail(f"{option} takes some of {', '.join(allowed)}; got {text!r}", exit_code=2)
    return picked


async def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark; print tables (or JSON with --json). Exit 0 when it ran."""
    if args.load:
        try:
            data = json.loads(await anyio.Path(args.load).read_text())
            text = json.dumps(data, indent=2) if args.json else markdown(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"cannot read bench results from {args.load}: {exc}")
        sys.stdout.write(text + ("\n" if args.json else ""))
        return 0
    sizes = _sizes(args)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        fail("--repeats must be at least 1", exit_code=2)
    kinds = _choice(args.transports, KINDS, "--transports")
    targets = tuple(t for t in TARGETS if t.kind in kinds)
    scale = "ws" in kinds
    if args.scenarios is not None:
        allowed = ("rtt", "throughput", "streaming", "hol", "memory", "fanout", "large", "scale")
        wanted = _choice(args.scenarios, allowed, "--scenarios")
        scale = scale and "scale" in wanted
        if "large" not in wanted:
            sizes = dataclasses.replace(sizes, large=())
        keep = {w for w in wanted if w not in ("large", "scale")}
        if "large" in wanted:
            keep |= {s.key for s in scenarios(sizes) if s.key.startswith("large")}
    else:
        keep = None
    # The SDK's HTTP client logs an error when a session closes with server-sent events
    # still arriving (as it does after the cancelled bulk streams); the bench reports
    # every failure itself.
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.CRITICAL)
    err = Console(stderr=True)
    total = repeats * steps_per_repeat(sizes, targets, scale, keep)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=total)

        @contextmanager
        def step(name: str) -> Iterator[None]:
            progress.update(task, description=name)
            try:
                yield
            finally:
                progress.advance(task)

        report = await run_bench(
            sizes=sizes,
            repeats=repeats,
            targets=targets,
            scale=scale,
            only=keep,
            step=step,
            backend=args.backend,
            pin=not args.no_pin,
        )
    report.machine["command"] = "mcp-ws " + " ".join(sys.argv[1:]) if sys.argv else "mcp-ws bench"
    if args.save:
        try:
            await anyio.Path(args.save).write_text(json.dumps(report.to_json(), indent=2))
        except OSError as exc:
            fail(f"cannot write {args.save}: {exc.strerror or exc}")
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.markdown:
        sys.stdout.write(markdown(report.to_json()))
    else:
        Console(width=max(Console().width, 120)).print(render(report))
    return 0
