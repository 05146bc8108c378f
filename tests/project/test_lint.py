"""The package and its tests pass ruff (lint and format) and mypy --strict, as part of
the test run (`pyproject.toml` holds their settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.timeout(120)
def test_ruff_lint_and_format() -> None:
    for args in (
        ("ruff", "check", "mcp_ws", "tests"),
        ("ruff", "format", "--check", "mcp_ws", "tests"),
    ):
        out = run(*args)
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(320)
def test_mypy_strict() -> None:
    out = run("mypy")  # strict, on mcp_ws and tests (pyproject.toml)
    assert out.returncode == 0, out.stdout + out.stderr
