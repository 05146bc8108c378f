// The Node lock is current: every version in package-lock.json is one that package.json's
// ranges admit (`npm ls --package-lock-only`, npm's own range rules), and the check does
// fail when a range moves past the locked version.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)); // js/, from build/test/

interface Listing {
  code: number;
  output: string;
}

function npmLs(cwd: string): Promise<Listing> {
  return new Promise((resolve) => {
    execFile("npm", ["ls", "--package-lock-only", "--all", "--json"], { cwd, timeout: 60000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
      resolve({ code, output: stdout + stderr });
    });
  });
}

test("package-lock.json holds versions that package.json's ranges admit", { timeout: 60000 }, async () => {
  const listing = await npmLs(ROOT);
  assert.equal(listing.code, 0, listing.output);
  const tree = JSON.parse(listing.output) as { problems?: string[]; dependencies?: Record<string, unknown> };
  assert.deepEqual(tree.problems ?? [], []);
  const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  for (const name of [...Object.keys(manifest.dependencies), ...Object.keys(manifest.devDependencies)]) {
    assert.ok(tree.dependencies?.[name], `${name} is not in the lock`);
  }
});

test("the lock check fails when a range no longer admits the locked version", { timeout: 60000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "mcp-ws-lock-"));
  try {
    const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      devDependencies: Record<string, string>;
    };
    manifest.devDependencies["ws"] = "^99.0.0";
    await writeFile(join(dir, "package.json"), JSON.stringify(manifest, null, 2));
    await copyFile(join(ROOT, "package-lock.json"), join(dir, "package-lock.json"));
    const listing = await npmLs(dir);
    assert.notEqual(listing.code, 0);
    assert.match(listing.output, /invalid: ws@\d+\.\d+\.\d+/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
