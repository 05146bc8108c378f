// The differential fuzzer (tests/fuzz_scenarios.py), bounded for CI: random step
// sequences, well-formed and mutated, through the Python core and this one (its Node
// worker, build/test/scenario-worker.js); every step's output must agree. It runs here,
// after the build, because it needs the compiled worker. A longer run on demand:
// `python -m tests.fuzz_scenarios --count 100000 --seconds 1800` from the repository root.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

for (const seed of [20261207, 31]) {
  test(`the Python and TypeScript cores agree on random scenarios (seed ${seed})`, { timeout: 120000 }, async () => {
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(
        process.env["PYTHON"] ?? "python",
        ["-m", "tests.fuzz_scenarios", "--count", "3000", "--seconds", "40", "--seed", String(seed)],
        { cwd: ROOT, timeout: 110000, maxBuffer: 64 * 1024 * 1024 },
        (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
      );
    });
    assert.match(stderr, new RegExp(`seed ${seed}: 0 differences in \\d+ s \\((\\d+) scenarios\\)`), stderr.slice(-4000));
    const ran = Number(/\((\d+) scenarios\)/.exec(stderr)?.[1]);
    assert.ok(ran >= 500, `only ${ran} scenarios ran`);
    assert.equal(code, 0);
  });
}
