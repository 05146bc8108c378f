// Every shared behaviour scenario (vectors/scenarios/) against the TypeScript core; the
// Python suite runs the same files (tests/protocol/test_scenarios.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { load, run } from "./scenarios.js";

const scenarios = load();

test("the scenario files hold at least 80 scenarios, each named once", () => {
  assert.ok(scenarios.length >= 80, `${scenarios.length} scenarios`);
  assert.equal(new Set(scenarios.map((scenario) => scenario.id)).size, scenarios.length);
});

for (const scenario of scenarios) {
  test(`scenario ${scenario.id}: ${scenario.about}`, { timeout: 10000 }, () => {
    assert.deepEqual(run(scenario), []);
  });
}

test("a scenario whose expectation is wrong fails", () => {
  const scenario = scenarios.find((s) => s.id === "hello/second-hello");
  assert.ok(scenario);
  const wrong = structuredClone(scenario);
  wrong.steps[0]!["sends"] = [];
  assert.notDeepEqual(run(wrong), []);
});
