"""Layering and packaging: the sans-I/O core loads no I/O module; the command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_importing_the_protocol_core_loads_no_io_module():
    code = (
        "import sys, mcp_ws.protocol\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anyio', 'websockets', 'socket', '_socket', 'trio', 'asyncio', 'mcp'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_documented():
    import mcp_ws.protocol as core

    undocumented = [
        name for name in core.__all__
        if callable(getattr(core, name)) and not (getattr(core, name).__doc__ or "").strip()
    ]
    assert undocumented == []


@pytest.mark.timeout(120)
def test_demo_command_runs_and_shows_streaming_backpressure_and_cancel():
    out = subprocess.run(
        [sys.executable, "-m", "mcp_ws", "demo"], capture_output=True, text=True, timeout=100, check=False
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Hello from mcp-ws" in text.replace("\n", "")
    assert "cancelled" in text
    assert "credit" in text


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "mcp_ws", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().startswith("mcp-ws ")


def test_the_sans_io_example_runs_a_call_to_completion():
    import runpy
    from pathlib import Path

    module = runpy.run_path(str(Path(__file__).parent.parent / "examples" / "sans_io_pair.py"))
    seen = module["main"]()
    assert seen == [
        "{'progressToken': 1, 'progress': 0}",
        "{'progressToken': 1, 'progress': 1}",
        "{'progressToken': 1, 'progress': 2}",
        "{'done': True}",
        "stream 1 ended",
    ]
