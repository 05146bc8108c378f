// `npm test`: Node's test runner over build/test/, failing when a test fails and also
// when no test ran at all (the runner alone passes with zero tests).
import { spawn } from "node:child_process";

const args = ["--test", "--test-timeout=120000", "--test-concurrency=1", "--test-reporter=tap", "build/test/"];
const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
let tail = "";
child.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString()).slice(-4096);
});
child.on("close", (code, signal) => {
  const ran = Number(/^# tests (\d+)$/m.exec(tail)?.[1] ?? 0);
  if (code === 0 && ran === 0) {
    console.error("npm test: no test ran");
    process.exit(1);
  }
  process.exit(code ?? (signal ? 1 : 0));
});
