// The TypeScript half of the differential fuzzer (tests/fuzz_scenarios.py): run with
// `--worker`, it reads one scenario per line on stdin, runs every step through the
// TypeScript core and writes one line per scenario: each step's outcome, or the error
// that escaped the core. Without `--worker` (as when the test runner loads every file
// under build/test/) it does nothing.
import { createInterface } from "node:readline";

import { type Json, type Scenario, Runner, expand } from "./scenarios.js";

async function serve(): Promise<void> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const scenario = JSON.parse(line) as Scenario;
    const outcomes: Json[] = [];
    let crash: string | null = null;
    try {
      const runner = new Runner(scenario);
      for (const step of expand(scenario)) {
        const outcome = runner.step(step);
        outcomes.push({
          sends: outcome.frames,
          events: outcome.events,
          returns: outcome.returned ?? null,
          raises: outcome.raised ?? null,
          check: outcome.checks,
        });
      }
    } catch (error) {
      crash = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    }
    process.stdout.write(`${JSON.stringify({ outcomes, crash })}\n`);
  }
}

if (process.argv.includes("--worker")) await serve();
