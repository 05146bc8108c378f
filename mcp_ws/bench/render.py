"""A bench `Report` as rich tables (the JSON form is `Report.to_json`)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .runner import Report
from .targets import TARGETS

__all__ = ["markdown", "render"]

#: metric -> (column heading, format)
METRICS: dict[str, tuple[str, str]] = {
    "p50_ms": ("p50 ms", "{:.2f}"),
    "p99_ms": ("p99 ms", "{:.2f}"),
    "cpu_ms": ("CPU ms/call", "{:.2f}"),
    "calls_per_s": ("calls/s", "{:,.0f}"),
    "deltas_per_s": ("deltas/s", "{:,.0f}"),
    "first_ms": ("first delta ms", "{:.2f}"),
    "cpu_us": ("CPU µs/delta", "{:.0f}"),
    "idle_p99_ms": ("idle p99 ms", "{:.2f}"),
    "loaded_p99_ms": ("loaded p99 ms", "{:.2f}"),
    "ratio": ("loaded/idle", "{:.2f}"),
    "server_mib": ("server MiB", "{:.1f}"),
    "client_mib": ("client MiB", "{:.1f}"),
    "ms": ("ms", "{:,.0f}"),
    "mib_per_s": ("MiB/s", "{:,.0f}"),
    "open_s": ("open all, s", "{:.2f}"),
    "answered": ("answered", "{:,.0f}"),
    "server_kib_each": ("server KiB each", "{:.0f}"),
    "in_flight": ("most in flight", "{:,.0f}"),
    "all_answered_s": ("all answered, s", "{:.2f}"),
    "streams": ("streams", "{:,.0f}"),
}


def _fmt(metric: str) -> str:
    """The format of ``metric``'s figures."""
    return METRICS.get(metric, (metric, "{:.3g}"))[1]


def _figure(metric: str, med: float, lo: float, hi: float, repeats: int) -> str:
    """A median, with (min-max) when the repeats differ."""
    fmt = _fmt(metric)
    if repeats > 1 and lo != hi:
        return f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"
    return fmt.format(med)


def _cell(report: Report, scenario: str, label: str, metric: str) -> str:
    spread = report.spread(scenario, label, metric)
    return "-" if spread is None else _figure(metric, *spread, report.repeats)


def scenario_table(report: Report, scenario: str) -> Table:
    """One scenario: a row per target, a column per figure (median, min-max)."""
    rows = report.samples.get(scenario, {})
    metrics: list[str] = []
    for runs in rows.values():
        for metric in runs[0]:
            if metric not in metrics:
                metrics.append(metric)
    table = Table(title=report.titles[scenario], title_justify="left", box=None, pad_edge=False)
    table.add_column("transport")
    for metric in metrics:
        table.add_column(METRICS.get(metric, (metric, ""))[0], justify="right")
    failures = any(report.failed(scenario, t.label) for t in TARGETS)
    if failures:
        table.add_column("")
    for label in (t.label for t in TARGETS):  # the scale runs' "mcp-ws" is among them
        failure = report.failed(scenario, label)
        if label in rows:
            cells = [_cell(report, scenario, label, m) for m in metrics]
            table.add_row(label, *cells, *([""] if failures else []))
        elif failure is not None:
            failed = Text(f"FAILED: {failure}", style="red")
            table.add_row(label, *(["-"] * len(metrics)), failed)
    return table


def headline_table(report: Report) -> Table:
    """mcp-ws against the best stock transport, per scenario, with the targets."""
    table = Table(
        title="mcp-ws against the best stock transport (medians)",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for heading, justify in (
        ("figure", "left"),
        ("mcp-ws", "right"),
        ("best stock", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("met", "left"),
    ):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    for h in report.headlines():
        fmt = _fmt(h.metric)
        ours = fmt.format(h.ours) if h.ours is not None else "failed"
        stock = ""
        if h.stock is not None:
            stock = f"{fmt.format(h.stock)} {h.stock_label}"
        elif h.scenario.startswith("large"):  # compared with stock, and every stock one failed
            stock = "all failed"
        ratio = f"{h.ratio:.2f}x" if h.ratio is not None else ""
        met = {True: Text("yes", style="green"), False: Text("NO", style="red"), None: Text("")}
        table.add_row(h.what, ours, stock, ratio, h.target, met[h.met])
    return table


def render(report: Report) -> RenderableType:
    """Every scenario's table, then the headline table."""
    parts: list[RenderableType] = []
    for scenario in report.titles:
        if scenario in report.samples or scenario in report.errors:
            parts += [scenario_table(report, scenario), Text("")]
    parts.append(headline_table(report))
    m = report.machine
    pinned = m.get("pinned")
    where = (
        f"client on CPU {pinned['client']}, servers on CPU {pinned['servers']}"
        if pinned
        else "not pinned"
    )
    parts.append(
        Text(
            f"\n{report.repeats} repeat(s), {report.seconds:.0f} s; Python {m.get('python')}, "
            f"{m.get('cpus')} CPUs ({where}), "
            f"mcp {m.get('mcp')}, mcp-ws {m.get('mcp_ws')}, "
            f"{report.backend}; medians (min-max over repeats)"
        )
    )
    return Group(*parts)


def _md_value(metric: str, cell: dict[str, Any], repeats: int) -> str:
    return _figure(metric, cell["median"], cell["min"], cell["max"], repeats)


def markdown(data: dict[str, Any]) -> str:
    """The JSON form of a report (`Report.to_json`) as Markdown tables."""
    lines: list[str] = []
    repeats = int(data.get("repeats", 1))
    for scenario in data["results"].values():
        rows: dict[str, Any] = scenario["targets"]
        metrics: list[str] = []
        for row in rows.values():
            metrics += [m for m in row if m != "error" and m not in metrics]
        headings = [METRICS.get(m, (m, ""))[0] for m in metrics]
        lines += [f"**{scenario['title']}**", ""]
        lines.append("| transport | " + " | ".join(headings) + " |")
        lines.append("|---" * (len(metrics) + 1) + "|")
        for label, row in rows.items():
            if "error" in row and len(row) == 1:
                cells = ["FAILED: " + row["error"].replace("|", "/")] + [""] * (len(metrics) - 1)
            else:
                cells = [_md_value(m, row[m], repeats) if m in row else "-" for m in metrics]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "**mcp-ws against the best stock transport (medians)**",
        "",
        "| figure | mcp-ws | best stock | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for h in data["headlines"]:
        fmt = _fmt(h["metric"])
        ours = fmt.format(h["ours"]) if h["ours"] is not None else "failed"
        stock = f"{fmt.format(h['stock'])} ({h['stock_label']})" if h["stock"] is not None else ""
        ratio = f"{h['ratio']:.2f}x" if h["ratio"] is not None else ""
        met = {True: "yes", False: "**no**", None: ""}[h["met"]]
        lines.append(f"| {h['what']} | {ours} | {stock} | {ratio} | {h['target']} | {met} |")
    return "\n".join(lines) + "\n"
