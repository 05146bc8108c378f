"""Layering and packaging: the sans-I/O core loads no I/O module; the command runs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def test_importing_the_protocol_core_loads_no_io_module() -> None:
    code = (
        "import sys, mcp_ws.protocol\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anyio', 'websockets', 'socket', '_socket', 'trio', 'asyncio', 'mcp'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


def test_public_names_are_documented() -> None:
    import mcp_ws.protocol as core

    undocumented = [
        name
        for name in core.__all__
        if callable(getattr(core, name)) and not (getattr(core, name).__doc__ or "").strip()
    ]
    assert undocumented == []


@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_command_streams_cancels_and_compares_with_stdio(backend: str) -> None:
    from mcp_ws.cli.demo_app import ANSWER

    out = subprocess.run(
        [sys.executable, "-m", "mcp_ws", "--backend", backend, "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "[start, meta {'model': 'canned'}]" in text
    assert ANSWER in text.replace("\n   ", "")
    assert "the final result matches them" in text
    assert "1 2 3 4 5 -> cancelled by the client; the server's handler stopped after" in text
    rows = [
        line
        for line in text.splitlines()
        if "round trip p50" in line or "deltas per second" in line
    ]
    assert len(rows) == 2
    assert all("failed" not in row for row in rows)
    assert out.stderr == ""


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mcp_ws", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip().startswith("mcp-ws ")


def test_the_sans_io_example_runs_a_call_to_completion() -> None:
    import runpy
    from pathlib import Path

    module = runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "examples" / "sans_io_pair.py")
    )
    seen = module["main"]()
    assert seen == [
        "{'progressToken': 1, 'progress': 0}",
        "{'progressToken': 1, 'progress': 1}",
        "{'progressToken': 1, 'progress': 2}",
        "{'done': True}",
        "stream 1 ended",
    ]


def test_the_distribution_name_is_ours_and_no_text_says_to_install_another() -> None:
    """`mcp-ws` on the package index is an unrelated project: ours is mcp-ws-streaming."""
    import re
    from importlib.metadata import version
    from pathlib import Path

    import mcp_ws

    assert version("mcp-ws-streaming") == mcp_ws.__version__
    root = Path(__file__).resolve().parents[2]
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        wrong = re.findall(r"pip install ['\"]?mcp-ws(?![-\w])", doc.read_text())
        assert wrong == [], f"{doc.name} tells users to install someone else's package"


def test_one_exception_tree_every_class_drawn_and_raised() -> None:
    """mcp_ws/protocol/errors.py holds every exception, draws them all in its docstring,
    and each one (but the abstract root) is raised somewhere in the package."""
    import inspect
    import re
    from pathlib import Path

    import mcp_ws
    from mcp_ws.protocol import errors

    classes = {name: getattr(errors, name) for name in errors.__all__}
    assert all(issubclass(cls, errors.McpWsError) for cls in classes.values())
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    assert drawn == set(classes) - {"McpWsError"}
    package = Path(mcp_ws.__file__).parent
    source = "\n".join(p.read_text() for p in package.rglob("*.py") if p.name != "errors.py")
    never = [
        name for name in classes if name != "McpWsError" and not re.search(rf"\b{name}\(", source)
    ]
    assert never == []
    # no other exception class a user can meet is defined elsewhere in the package (the
    # core catches its InvalidMessage; the command turns a CommandError into its exit code)
    internal = {"protocol/message.py: InvalidMessage", "cli/common.py: CommandError"}
    elsewhere = [
        f"{p.relative_to(package)}: {m}"
        for p in package.rglob("*.py")
        if p.name != "errors.py"
        for m in re.findall(
            r"^class (\w+)\((?:\w+Error|Exception|McpWsError)\)", p.read_text(), re.M
        )
    ]
    assert set(elsewhere) == internal
    assert inspect.getmodule(mcp_ws.HandshakeError) is errors


ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / ".ci" / "constraints.txt"


def locked_versions() -> dict[str, Version]:
    """The Python lock, `.ci/constraints.txt`: a pinned version per canonical name."""
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one `==` pin a line, nothing looser
        assert spec.operator == "==", line
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def declared() -> list[tuple[str, Requirement]]:
    """Every requirement pyproject.toml declares: (extra or "", requirement)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pairs = [("", Requirement(text)) for text in project["dependencies"]]
    for extra, texts in project.get("optional-dependencies", {}).items():
        pairs += [(extra, Requirement(text)) for text in texts]
    return pairs


def test_the_python_lock_pins_every_declared_dependency_within_its_range() -> None:
    """`.ci/run` installs the lock: each pin must be one that pyproject.toml's ranges
    admit, or the locked run would test versions no user can get."""
    pins = locked_versions()
    outside = []
    for extra, requirement in declared():
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin, prereleases=True):
            outside.append(f"{requirement} (locked: {pin})")
    assert outside == []


def test_the_python_lock_holds_every_dependency_the_test_environment_pulls_in() -> None:
    """Walk the installed requirements from `mcp-ws-streaming[dev]` down: every package
    reached is in the lock, so `pip install -c` leaves nothing to float (a release that
    adds a dependency shows up here under `.ci/run --latest`)."""
    pins = locked_versions()
    seen: set[tuple[str, str]] = set()
    todo = [("mcp-ws-streaming", "dev")]
    while todo:
        name, extra = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
                continue
            key = canonicalize_name(requirement.name)
            for wanted in sorted(requirement.extras) or [""]:
                if (key, wanted) not in seen:
                    seen.add((key, wanted))
                    todo.append((key, wanted))
    reached = {key for key, _ in seen}
    assert sorted(reached - set(pins)) == []


def test_the_lock_check_sees_a_pin_outside_its_range() -> None:
    requirement = Requirement("anyio>=4.11")
    assert requirement.specifier.contains(locked_versions()["anyio"])
    assert not requirement.specifier.contains(Version("4.10.0"))


def test_the_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command (after making its virtual environment) is `.ci/run`'s
    locked line, word for word."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(
        r"^python3 -m venv \.venv && \. \.venv/bin/activate && (.+)$", readme, re.M
    )
    tests = [command for command in commands if "pytest" in command]
    assert len(tests) == 1
    assert "-c .ci/constraints.txt" in tests[0]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"  {tests[0]}" in ci


def installed_closure(name: str, extra: str = "") -> set[str]:
    """The distributions ``pip install name[extra]`` brings, ``name`` included."""
    seen: set[str] = {canonicalize_name(name)}
    todo = [(name, extra)]
    while todo:
        dist, wanted = todo.pop()
        for text in metadata.requires(dist) or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": wanted}):
                continue
            key = canonicalize_name(requirement.name)
            if key not in seen:
                seen.add(key)
                todo.append((key, ""))
    return seen


def module_level_imports(package: Path) -> dict[str, set[str]]:
    """Top-level module names the package imports when it loads (imports inside a
    function, for optional extras, excluded), with the files that import them."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:  # module level only
            if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports nothing at run time
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def test_the_package_imports_only_what_a_plain_install_brings() -> None:
    """``pip install mcp-ws-streaming`` (the README's first command) must be enough to
    load every module: each third-party module imported at load time comes from a
    distribution the plain install brings. (``sniffio``, which anyio no longer
    requires, once slipped in and broke ``mcp-ws demo`` on a fresh machine, while the
    test environment had it through its own extras.)"""
    package = Path(__file__).resolve().parents[2] / "mcp_ws"
    closure = installed_closure("mcp-ws-streaming")
    providers = metadata.packages_distributions()
    missing = []
    for module, files in sorted(module_level_imports(package).items()):
        if module in sys.stdlib_module_names or module == "mcp_ws":
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & closure:
            missing.append(f"{module} (imported by {', '.join(sorted(files))})")
    assert missing == []


def test_the_import_check_sees_a_module_no_dependency_brings(tmp_path: Path) -> None:
    (tmp_path / "stray.py").write_text("import sniffio\nimport anyio\n")
    imports = module_level_imports(tmp_path)
    assert set(imports) == {"sniffio", "anyio"}
    providers = metadata.packages_distributions()
    closure = installed_closure("mcp-ws-streaming")
    assert not {canonicalize_name(d) for d in providers["sniffio"]} & closure
    assert {canonicalize_name(d) for d in providers["anyio"]} & closure
