"""The differential fuzzer's own parts (tests/fuzz_scenarios.py). The bounded run against
the TypeScript core is in the Node suite (js/test/differential.test.ts), which builds the
worker it needs; here: the generator keeps connections alive, and a difference is found
and reported as a scenario."""

from __future__ import annotations

import io
import json
import random
from typing import Any

from ..fuzz_scenarios import CHECKS, Generator, compare, normalized, python_outcomes
from ..scenarios import run


class FakeWorker:
    """Stands in for the Node worker: answers with the Python core's own outcomes,
    changed by ``alter`` (the TypeScript side that would disagree)."""

    def __init__(self, alter: Any = None) -> None:
        self.stdin = io.StringIO()
        self.alter = alter

    @property
    def stdout(self) -> io.StringIO:
        scenario = json.loads(self.stdin.getvalue().splitlines()[-1])
        outcomes, crash = python_outcomes(scenario)
        if self.alter:
            self.alter(outcomes)
        return io.StringIO(json.dumps({"outcomes": outcomes, "crash": crash}) + "\n")


def test_the_generator_keeps_connections_open_and_reaches_every_event() -> None:
    generator = Generator(random.Random(7))
    steps = open_steps = 0
    seen: set[str] = set()
    for index in range(400):
        scenario = generator.scenario(index)
        scenario = {**scenario, "steps": [{**s, "check": CHECKS} for s in scenario["steps"]]}
        outcomes, crash = python_outcomes(scenario)
        assert crash is None
        for outcome in outcomes:
            steps += 1
            open_steps += outcome["check"].get("connection", "open") != "closed"
            seen |= {event["event"] for event in outcome["events"]}
    assert open_steps > steps / 3
    assert seen >= {
        "hello",
        "opened",
        "message",
        "ended",
        "cancelled",
        "credit",
        "goaway",
        "terminated",
    }


def test_agreeing_sides_report_nothing() -> None:
    scenario = Generator(random.Random(1)).scenario(0)
    assert compare(scenario, FakeWorker()) is None  # type: ignore[arg-type]


def test_a_difference_becomes_a_scenario_that_passes_on_python() -> None:
    generator = Generator(random.Random(3))
    scenario = next(s for s in (generator.scenario(i) for i in range(100)) if len(s["steps"]) >= 3)

    def alter(outcomes: list[dict[str, Any]]) -> None:
        outcomes[-1]["events"] = [*outcomes[-1]["events"], {"event": "ended", "stream": 99}]

    report = compare(scenario, FakeWorker(alter))  # type: ignore[arg-type]
    assert report is not None
    assert "typescript" in report["difference"]
    found = report["scenario"]
    assert len(found["steps"]) == len(scenario["steps"])
    assert run(found) == []  # Python's outcomes are its expectations


def test_free_text_reasons_of_a_sides_own_errors_are_not_compared() -> None:
    outcome = {
        "sends": [[3, 1, 0, 4, "DATA after END"], [6, 0, 0, 0, 1, "bad"]],
        "events": [{"event": "cancelled", "stream": 1, "code": 4, "remote": False, "reason": "x"}],
    }
    assert normalized(outcome) == {
        "sends": [[3, 1, 0, 4, "*"], [6, 0, 0, 0, 1, "*"]],
        "events": [{"event": "cancelled", "stream": 1, "code": 4, "remote": False}],
    }
