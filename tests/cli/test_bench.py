"""``mcp-ws bench``: it runs every scenario against every transport and reports honestly.

Only shapes and bookkeeping are asserted here, never speed: the figures themselves belong
in ``bench/RESULTS.md``. The command runs as a subprocess on asyncio and trio.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mcp_ws.bench.runner import Report, run_bench
from mcp_ws.bench.scenarios import INTERLEAVED_BLOCKS, Sizes, interleaved_round_trips
from mcp_ws.bench.targets import Running, Target, cpu_placement, running

from .test_cli import run_command

pytestmark = pytest.mark.anyio

TINY = ("--quick", "--round-trips", "12", "--deltas", "40", "--connections", "4", "--streams", "9")


def figures(row: dict[str, Any]) -> dict[str, float]:
    return {k: v["median"] for k, v in row.items() if k != "error"}


@pytest.mark.timeout(150)
async def test_every_transport_in_one_run_with_ratios_against_the_best_stock_one(
    anyio_backend: str,
) -> None:
    code, out, err = await run_command(
        anyio_backend,
        "bench",
        *TINY,
        "--json",
        "--scenarios",
        "rtt,throughput,streaming,large",
        "--large",
        "1",
        limit=140,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["repeats"] == 1
    assert report["sizes"]["deltas"] == 40
    labels = [
        "mcp-ws",
        "mcp-ws (legacy)",
        "stdio",
        "stdio (legacy)",
        "streamable HTTP",
        "streamable HTTP (legacy)",
        "in-process",
    ]
    results = report["results"]
    assert list(results) == ["rtt", "rtt_interleaved", "throughput", "streaming", "large_1mib"]
    for label in labels:
        rtt = figures(results["rtt"]["targets"][label])
        assert 0 < rtt["p50_ms"] <= rtt["p99_ms"]
        assert rtt["cpu_ms"] > 0
        assert figures(results["rtt_interleaved"]["targets"][label])["p50_ms"] > 0
        stream = figures(results["streaming"]["targets"][label])
        assert stream["deltas_per_s"] > 0
        assert stream["first_ms"] > 0
    # a failing stock transport is reported as such, with its error, not dropped
    legacy_http = results["large_1mib"]["targets"]["streamable HTTP (legacy)"]
    assert "1048576 byte limit" in legacy_http["error"]
    assert len(legacy_http) == 1
    assert figures(results["large_1mib"]["targets"]["mcp-ws"])["ms"] > 0
    # the headline compares mcp-ws with the best stock transport, by the figure's direction;
    # the round trip's is the interleaved run's (the figure another run reproduces)
    by_metric = {h["metric"]: h for h in report["headlines"]}
    rtt = by_metric["p50_ms"]
    assert rtt["scenario"] == "rtt_interleaved"
    turns = results["rtt_interleaved"]["targets"]
    stock = {lab: figures(turns[lab])["p50_ms"] for lab in labels[2:6]}
    assert rtt["stock_label"] == min(stock, key=lambda lab: stock[lab])
    assert math.isclose(rtt["ratio"], rtt["ours"] / rtt["stock"])
    rate = by_metric["calls_per_s"]
    assert rate["stock"] == max(
        figures(results["throughput"]["targets"][lab])["calls_per_s"] for lab in labels[2:6]
    )
    assert rate["met"] == (rate["ratio"] >= 1.5)


@pytest.mark.timeout(120)
async def test_head_of_line_memory_and_scale_on_mcp_ws_and_a_table(
    anyio_backend: str, tmp_path: Path
) -> None:
    saved = tmp_path / "results.json"
    code, out, err = await run_command(
        anyio_backend,
        "bench",
        *TINY,
        "--transports",
        "ws",
        "--scenarios",
        "hol,memory,scale",
        "--save",
        str(saved),
        limit=110,
    )
    assert code == 0, err
    for title in (
        "small calls beside a bulk stream to a slow reader",
        "a producer outrunning its reader",
        "4 connections to one server",
        "9 calls in flight on one connection",
        "mcp-ws against the best stock transport",
    ):
        assert title in out
    assert "FAILED" not in out
    served = next(line for line in out.splitlines() if line.startswith("connections served"))
    assert served.split()[2:] == ["4", "all", "yes"]
    # the saved results print again as Markdown, without running anything
    code, md, err = await run_command(anyio_backend, "bench", "--load", str(saved))
    assert code == 0, err
    assert "**4 connections to one server**" in md
    assert "| connections served | 4 |  |  | all | yes |" in md
    saved_data = json.loads(saved.read_text())
    assert set(saved_data["results"]) == {"hol", "memory", "connections", "streams"}
    code, _, err = await run_command(anyio_backend, "bench", "--load", str(tmp_path / "none"))
    assert code == 1
    assert "cannot read bench results from" in err


@pytest.mark.timeout(60)
async def test_bad_options_are_clear_errors(anyio_backend: str) -> None:
    code, _, err = await run_command(anyio_backend, "bench", "--transports", "ws,pigeon")
    assert code == 2
    assert "--transports takes some of ws, stdio, http, inproc" in err
    code, _, err = await run_command(anyio_backend, "bench", "--large", "1.5")
    assert code == 2
    assert "--large takes whole MiB" in err
    code, _, err = await run_command(anyio_backend, "bench", "--repeats", "0")
    assert code == 2
    assert "--repeats must be at least 1" in err


def test_absolute_bounds_hold_for_every_era_of_mcp_ws() -> None:
    report = Report(sizes=Sizes.quick(), repeats=1, backend="asyncio")
    report.titles = {"hol": "hol", "memory": "memory"}
    report.add("hol", "mcp-ws", {"ratio": 1.2})
    report.add("hol", "mcp-ws (legacy)", {"ratio": 3.5})
    report.add("memory", "mcp-ws", {"server_mib": 1.0, "client_mib": 2.0})
    report.add("memory", "stdio", {"server_mib": 0.0, "client_mib": 150.0})
    found = {h.metric: h for h in report.headlines()}
    assert found["ratio"].ours == 3.5
    assert found["ratio"].met is False
    assert found["server_mib"].met is True
    assert found["server_mib"].stock is None
    assert found["client_mib"].ours == 2.0


def test_a_target_that_never_succeeded_has_no_median_and_its_error_is_kept() -> None:
    report = Report(sizes=Sizes.quick(), repeats=2, backend="trio")
    report.titles = {"large_64mib": "a 64 MiB result"}
    report.fail("large_64mib", "stdio", "timed out")
    report.add("large_64mib", "mcp-ws", {"ms": 900.0})
    report.add("large_64mib", "mcp-ws", {"ms": 700.0})
    assert report.median("large_64mib", "stdio", "ms") is None
    assert report.failed("large_64mib", "stdio") == "timed out"
    assert report.spread("large_64mib", "mcp-ws", "ms") == (800.0, 700.0, 900.0)
    (headline,) = report.headlines()
    assert headline.met is True
    assert headline.ratio is None
    data = report.to_json()["results"]["large_64mib"]["targets"]
    assert data["stdio"] == {"error": "timed out"}
    assert data["mcp-ws"]["ms"]["samples"] == [900.0, 700.0]


class FakeClient:
    """Records whose calls ran, in order (``collect`` and ``stats`` answered empty)."""

    def __init__(self, label: str, log: list[tuple[str, str]]) -> None:
        self.label = label
        self.log = log

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> object:
        self.log.append((self.label, name))
        await anyio.lowlevel.checkpoint()
        return None


async def test_interleaved_round_trips_take_turns_block_by_block() -> None:
    log: list[tuple[str, str]] = []
    clients = {label: FakeClient(label, log) for label in ("a", "b", "c")}
    sizes = Sizes(round_trips=2 * INTERLEAVED_BLOCKS)
    found = await interleaved_round_trips(clients, sizes)  # type: ignore[arg-type]
    assert set(found) == {"a", "b", "c"}
    assert all(f["p50_ms"] > 0 for f in found.values())
    echoes = [label for label, name in log if name == "echo"]
    warm_up, measured = echoes[:90], echoes[90:]
    assert warm_up == ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    assert len(measured) == 3 * sizes.round_trips  # round_trips calls each
    blocks = [measured[i] for i in range(0, len(measured), 2)]  # 2 calls a block
    assert all(measured[i] == measured[i + 1] for i in range(0, len(measured), 2))
    rotation = [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    expected = [label for block in range(INTERLEAVED_BLOCKS) for label in rotation[block % 3]]
    assert blocks == expected


async def test_a_server_that_does_not_start_fails_its_rows_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: Running) -> None:
        raise RuntimeError("no port for you")

    monkeypatch.setattr(Running, "start", refuse)
    with anyio.fail_after(20):
        report = await run_bench(
            sizes=Sizes.quick(),
            repeats=1,
            targets=(Target("http", "auto"), Target("http", "legacy")),
            scale=False,
            only={"rtt", "streaming"},
        )
    for label in ("streamable HTTP", "streamable HTTP (legacy)"):
        for scenario in ("rtt", "rtt_interleaved", "streaming"):
            why = report.failed(scenario, label)
            assert why is not None
            assert why.endswith("RuntimeError: no port for you")
    assert report.to_json()["results"]["rtt"]["targets"]["streamable HTTP"] == {
        "error": "the server did not start: RuntimeError: no port for you"
    }


@pytest.mark.timeout(60)
async def test_each_server_keeps_to_the_cpu_it_is_given() -> None:
    cpu = max(os.sched_getaffinity(0))
    with anyio.fail_after(50):
        for kind in ("ws", "stdio", "http"):
            async with running(kind, cpu) as server, server.client(Target(kind, "auto")) as c:
                stats = (await c.call_tool("stats", {})).structured_content
                assert stats is not None
                assert stats["pid"] != os.getpid()
                assert stats["cpus"] == [cpu], kind


@pytest.mark.timeout(60)
async def test_the_runner_keeps_to_one_cpu_while_it_runs_and_gives_the_rest_back() -> None:
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []

    @contextmanager
    def step(name: str) -> Iterator[None]:
        seen.append(os.sched_getaffinity(0))
        yield

    options: dict[str, Any] = {
        "sizes": Sizes.quick(),
        "repeats": 1,
        "targets": (Target("ws", "legacy"),),
        "scale": False,
        "only": {"rtt"},
        "step": step,
    }
    with anyio.fail_after(50):
        pinned = await run_bench(**options)
        assert os.sched_getaffinity(0) == before
        placement = cpu_placement()
        if placement is None:  # one CPU: nothing to pin
            assert "pinned" not in pinned.machine
        else:
            assert pinned.machine["pinned"] == {"client": placement[0], "servers": placement[1]}
            assert seen == [{placement[0]}]
        seen.clear()
        free = await run_bench(**options, pin=False)
    assert "pinned" not in free.machine
    assert seen == [before]
    assert os.sched_getaffinity(0) == before
    assert free.median("rtt", "mcp-ws (legacy)", "p50_ms") is not None


@pytest.mark.timeout(150)
async def test_fan_out_finds_how_many_paced_streams_each_transport_sustains(
    anyio_backend: str,
) -> None:
    code, out, err = await run_command(
        anyio_backend,
        "bench",
        *TINY,
        "--json",
        "--transports",
        "ws,stdio",
        "--scenarios",
        "fanout",
        limit=140,
    )
    assert code == 0, err
    report = json.loads(out)
    rows = report["results"]["fanout"]["targets"]
    assert set(rows) == {"mcp-ws", "mcp-ws (legacy)", "stdio", "stdio (legacy)"}
    for label, row in rows.items():
        assert "error" not in row, (label, row)
        streams = figures(row)["streams"]
        # 0 (not even 10 streams), or a multiple of 5 from 10 up to --quick's 160
        assert streams == 0 or (10 <= streams <= 160 and streams % 5 == 0), (label, streams)
        if streams:
            assert 0 < figures(row)["p99_ms"] <= 25, (label, row)
    (headline,) = [h for h in report["headlines"] if h["scenario"] == "fanout"]
    assert headline["what"] == "fan-out streams"
    assert headline["target"] == ">= 5x"
    assert headline["stock_label"] in ("stdio", "stdio (legacy)")


@pytest.mark.timeout(120)
def test_bytecodes_by_layer_add_up_and_the_data_path_never_runs_websockets_code() -> None:
    """``bench/instructions.py --layers``: a row per layer, rows that add up to the
    total, and in steady state mcp-ws runs none of the ``websockets`` library's Python
    (its frames are read and written by mcp-ws's own fast path), while the raw echo
    runs nothing of mcp-ws."""
    script = Path(__file__).resolve().parents[2] / "bench" / "instructions.py"
    done = subprocess.run(
        [sys.executable, str(script), "--layers", "--kinds", "ws,raw"],
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    rows = {}
    for line in done.stdout.splitlines()[1:]:
        name, ws, raw = line.rsplit(maxsplit=2)
        rows[name.strip()] = (float(ws.replace(",", "")), float(raw.replace(",", "")))
    total = rows.pop("total")
    calls = rows.pop("Python calls (and resumptions)")
    for kind in (0, 1):
        assert abs(sum(r[kind] for r in rows.values()) - total[kind]) <= len(rows)  # rounding
        assert calls[kind] > 0
    ours, theirs = rows["websockets (the library)"]
    assert ours == 0
    assert theirs > 0
    mine = [name for name in rows if name.startswith("mcp-ws:")]
    assert len(mine) == 4
    assert all(rows[name][0] > 0 and rows[name][1] == 0 for name in mine)
    assert total[0] > 0
    assert total[1] > 0
