"""The maintainers' documents stay true to the code: every `file:function` that
docs/architecture.md names exists, and every section of docs/protocol.md that a document,
docstring or comment cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: A backticked `path/to/file.py:Name.attr` (or .ts), or a bare `Name.attr` that belongs
#: to the last file named on the same line.
NAMED = re.compile(
    r"`(?:((?:mcp_ws|js|tests|bench)/[\w/.-]+\.(?:py|ts)):)?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)`"
)


def defines(source: str, name: str, suffix: str) -> bool:
    """Whether ``source`` defines ``name`` (a class, function or method; dotted names
    need their class and their member)."""
    *owners, last = name.split(".")
    for owner in owners:
        if not re.search(rf"^\s*(?:export\s+)?class {owner}\b", source, re.M):
            return False
    if suffix == ".py":
        pattern = rf"^\s*(?:async\s+)?def {last}\b|^\s*class {last}\b|^{last}\s*[:=]"
    else:
        pattern = (
            rf"^\s*(?:export\s+)?(?:async\s+)?function\*?\s+{last}\b|^\s*(?:export\s+)?class {last}\b"
            rf"|^\s*(?:private\s+|static\s+|async\s+|get\s+|readonly\s+)*\*?{last}\s*[(<:=]"
        )
    return re.search(pattern, source, re.M) is not None


def named_functions(text: str) -> list[tuple[str, str]]:
    """``(file, name)`` for every code location a document names."""
    found = []
    for line in text.splitlines():
        current = None
        for path, name in NAMED.findall(line):
            if path:
                current = path
                found.append((path, name))
            elif current and "." in name and name[0].isupper():
                found.append((current, name))
    return found


def test_every_file_function_the_architecture_map_names_exists() -> None:
    names = named_functions((ROOT / "docs" / "architecture.md").read_text())
    assert len(names) >= 60
    missing = []
    for path, name in names:
        file = ROOT / path
        if not file.exists() or not defines(file.read_text(), name, file.suffix):
            missing.append(f"{path}:{name}")
    assert missing == []


def test_the_map_checker_sees_a_missing_function() -> None:
    assert not defines("class A:\n    def b(self): ...\n", "A.c", ".py")
    assert defines("class A:\n    def b(self): ...\n", "A.b", ".py")
    assert defines(
        "export class L {\n  private async sendRequest(m: M): void {}\n}", "L.sendRequest", ".ts"
    )
    assert named_functions("`mcp_ws/x.py:A.b` then `A.c` and `plain`") == [
        ("mcp_ws/x.py", "A.b"),
        ("mcp_ws/x.py", "A.c"),
    ]


def protocol_sections() -> set[int]:
    text = (ROOT / "docs" / "protocol.md").read_text()
    return {int(n) for n in re.findall(r"^## (\d+)\. ", text, re.M)}


#: "section N" or "sections N and M", not a section of an RFC.
CITED = re.compile(r"(?<!RFC \d{4} )(?<!RFC \d{4}, )\bsections? (\d+)(?: and (\d+))?")


def cited_sections() -> list[tuple[str, int]]:
    files = [
        *ROOT.glob("*.md"),
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "vectors").glob("*.md"),
        *(ROOT / "mcp_ws").rglob("*.py"),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "js" / "src").glob("*.ts"),
        *(ROOT / "js" / "test").glob("*.ts"),
    ]
    found = []
    for file in files:
        if file.name == "test_docs.py":
            continue  # its own examples
        text = re.sub(r"\s+", " ", file.read_text())  # a citation may wrap
        for match in CITED.finditer(text):
            found += [(file.name, int(n)) for n in match.groups() if n]
    return found


def test_every_cited_section_of_the_protocol_exists() -> None:
    sections = protocol_sections()
    assert sections == set(range(1, 10))
    cited = cited_sections()
    assert len(cited) >= 20
    assert [(file, n) for file, n in cited if n not in sections] == []


def test_the_section_checker_skips_rfcs_and_sees_a_bad_citation() -> None:
    assert [m.groups() for m in CITED.finditer("see RFC 6455 section 5.5 and section 9")] == [
        ("9", None)
    ]
