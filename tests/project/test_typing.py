"""The public API as type checkers see it: `import mcp_ws` exposes real signatures
(the lazy exports have a TYPE_CHECKING branch), checked with mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "tests" / "typed" / "user_program.py"


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.timeout(300)
def test_a_user_program_passes_mypy_strict() -> None:
    out = mypy(PROGRAM)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.timeout(300)
def test_mypy_sees_the_real_signatures(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "import mcp_ws\n"
        "async def f() -> None:\n"
        "    async with mcp_ws.connect(8765) as (read, write):\n"
        "        pass\n"
        "async def g() -> None:\n"
        "    async with mcp_ws.connect('ws://127.0.0.1:1/mcp') as (read, write):\n"
        "        reveal_type(read)\n"
        "        await write.send('not a SessionMessage')\n"
        "reveal_type(mcp_ws.stream_tool)\n"
    )
    out = mypy(wrong)
    assert out.returncode == 1
    assert 'Argument 1 to "connect" has incompatible type "int"; expected "str"' in out.stdout
    # connect yields the SDK's own stream types, not Any: misuse is caught
    assert "ReadStream[mcp.shared.message.SessionMessage | Exception]" in out.stdout
    assert 'Argument 1 to "send" of "WriteStream" has incompatible type "str"' in out.stdout
    assert "def (target: Any, name: str, arguments:" in out.stdout
    assert "-> mcp_ws.sdk.stream_tool.ToolStream" in out.stdout
