"""Every shared behaviour scenario (vectors/scenarios/) against the Python core; the
TypeScript suite runs the same files (js/test/scenarios.test.ts)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import msgpack
import pytest

from ..scenarios import load, matches, message_of_size, run

SCENARIOS = load()


def test_the_scenario_files_hold_at_least_80_scenarios_each_named_once() -> None:
    assert len(SCENARIOS) >= 80
    ids = Counter(scenario["id"] for scenario in SCENARIOS)
    assert [name for name, count in ids.items() if count > 1] == []
    assert all(
        scenario["about"] and scenario["role"] in ("client", "server") for scenario in SCENARIOS
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_scenario(scenario: dict[str, Any]) -> None:
    assert run(scenario) == [], scenario["about"]


def test_a_scenario_whose_expectation_is_wrong_fails() -> None:
    scenario = next(s for s in SCENARIOS if s["id"] == "hello/second-hello")
    wrong = copy.deepcopy(scenario)
    wrong["steps"][0]["sends"] = []
    assert run(wrong) != []
    wrong = copy.deepcopy(scenario)
    wrong["steps"][0]["events"][0]["close_code"] = 1000
    assert run(wrong) != []


def test_generated_messages_have_the_exact_size() -> None:
    for size in (40, 100, 255, 256, 16384, 65536, 70000):
        assert len(msgpack.packb(message_of_size(size), use_bin_type=True)) == size
    with pytest.raises(ValueError, match="no message of exactly 10 bytes"):
        message_of_size(10)


def test_the_matching_rules() -> None:
    assert matches("*", {"anything": 1})
    assert matches({"event": "cancelled"}, {"event": "cancelled", "reason": "any text"})
    assert not matches({"event": "cancelled", "reason": "a"}, {"event": "cancelled", "reason": "b"})
    assert not matches({"event": "ended"}, {"event": "ended", "stream": 1})
    assert matches(15, 15.0)
    assert not matches(1, True)
    assert not matches([1], [1, 2])
