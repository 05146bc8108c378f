// Client behaviour scenarios (vectors/clients/): the same steps the Python client runs in
// tests/sdk/test_client_scenarios.py, run by the TypeScript client against the same test
// app; both must see the same events. The format is in vectors/README.md.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

import { type StreamEvent, attachStream, streamTool } from "../src/index.js";
import { CutRelay } from "./relay.js";
import { type PythonServer, connectClient, startServer, textOf } from "./server.js";

type Seen = (string | number | null | undefined)[];
type Step = Record<string, unknown> & { do: string; events: Seen[] };
interface Scenario {
  id: string;
  name: string;
  about: string;
  steps: Step[];
}

const CLIENTS = fileURLToPath(new URL("../../../vectors/clients", import.meta.url));

function load(): Scenario[] {
  const found: Scenario[] = [];
  for (const file of readdirSync(CLIENTS).filter((f) => f.endsWith(".json")).sort()) {
    const document = JSON.parse(readFileSync(join(CLIENTS, file), "utf8")) as { scenarios: Scenario[] };
    for (const scenario of document.scenarios) found.push({ ...scenario, id: `${file.replace(/\.json$/, "")}/${scenario.name}` });
  }
  return found;
}

/** An event as the scenarios write it. */
function seen(event: StreamEvent): Seen {
  switch (event.type) {
    case "start":
      return ["start", event.handle ?? null];
    case "delta":
      return ["delta", event.seq, event.text ?? ""];
    case "completed":
      return ["completed", textOf(event.result)];
    case "failed": {
      const error = event.error;
      if (error instanceof McpError) return ["failed", error.code, error.message.replace(`MCP error ${error.code}: `, "")];
      return ["failed", null, error.message];
    }
  }
}

/** Why `actual` does not match `expected` ("" when it does): the rules of
 * tests/sdk/test_client_scenarios.py `mismatches`. */
function mismatches(expected: Seen[], actual: Seen[], handles: Map<string, unknown>): string {
  let at = 0;
  for (const want of expected) {
    if (want[0] === "deltas") {
      const first = want[1] as number;
      const last = want[2] as number | null;
      let seq = first;
      while (at < actual.length && actual[at]![0] === "delta" && actual[at]![1] === seq && (last === null || seq <= last)) {
        at += 1;
        seq += 1;
      }
      if (last !== null && seq !== last + 1) return `deltas ${first} to ${last}: stopped at ${seq}, ${JSON.stringify(actual.slice(at, at + 1))}`;
      continue;
    }
    if (at >= actual.length) return `${JSON.stringify(want)}: nothing more came`;
    const got = actual[at]!;
    const wanted = want.map((v) => (typeof v === "string" && v.startsWith("$") ? handles.get(v.slice(1)) : v));
    if (got.length !== wanted.length || wanted.some((w, i) => w !== null && w !== got[i])) {
      return `event ${at}: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(got)}`;
    }
    at += 1;
  }
  return at === actual.length ? "" : `more than expected: ${JSON.stringify(actual.slice(at))}`;
}

function deltasIn(events: Seen[]): number {
  return events.filter((e) => e[0] === "delta").length;
}

/** `stream`: a call of `tool`; `vanish_after` N deltas its link is cut (no cancel reaches
 * the server), `leave_after` N deltas its caller leaves (a cancel). */
async function streamStep(step: Step, server: PythonServer, handles: Map<string, unknown>): Promise<Seen[]> {
  const vanish = step["vanish_after"] as number | undefined;
  const leave = step["leave_after"] as number | undefined;
  const relay = vanish === undefined ? undefined : await new CutRelay(Number(new URL(server.url).port)).listen();
  const { client } = await connectClient(relay ? relay.url() : server.url, { resume: false });
  const events: Seen[] = [];
  try {
    for await (const event of streamTool(client, step["tool"] as string, step["arguments"] as Record<string, unknown>)) {
      events.push(seen(event));
      if (event.type === "start" && typeof step["name"] === "string") handles.set(step["name"], event.handle);
      if (event.type === "delta" && deltasIn(events) === vanish) {
        relay!.cut();
        break;
      }
      if (event.type === "delta" && deltasIn(events) === leave) break;
    }
  } finally {
    await client.close().catch(() => undefined);
    await relay?.close();
  }
  return events;
}

/** `attach`: read `handle` after `after`; `leave_after` N deltas the reader leaves,
 * `cancel_after` N deltas it cancels the call and reads on to the end. */
async function attachStep(step: Step, reader: Client, handles: Map<string, unknown>): Promise<Seen[]> {
  const named = step["handle"];
  const handle = typeof named === "string" && named.startsWith("$") ? handles.get(named.slice(1)) : named;
  const options = "after" in step ? { after: step["after"] as number } : {};
  const stream = attachStream(reader, handle as string, options);
  const events: Seen[] = [];
  for await (const event of stream) {
    events.push(seen(event));
    if (event.type === "delta" && deltasIn(events) === step["leave_after"]) break;
    if (event.type === "delta" && deltasIn(events) === step["cancel_after"]) stream.cancel();
  }
  return events;
}

async function play(scenario: Scenario, server: PythonServer): Promise<string[]> {
  const failures: string[] = [];
  const handles = new Map<string, unknown>();
  const { client: reader } = await connectClient(server.url);
  try {
    for (const [number, step] of scenario.steps.entries()) {
      let events: Seen[];
      if (step.do === "stream") events = await streamStep(step, server, handles);
      else if (step.do === "attach") events = await attachStep(step, reader, handles);
      else throw new Error(`unknown step ${step.do}`);
      const why = mismatches(step.events, events, handles);
      if (why) failures.push(`step ${number} (${step.do}): ${why}`);
    }
  } finally {
    await reader.close();
  }
  return failures;
}

const scenarios = load();

describe("client scenarios (vectors/clients/) with the TypeScript client", { timeout: 120000 }, () => {
  let server: PythonServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  test("the client scenario files are named once and cover attach", () => {
    assert.ok(scenarios.length >= 6, `${scenarios.length} scenarios`);
    assert.equal(new Set(scenarios.map((s) => s.id)).size, scenarios.length);
    assert.deepEqual(new Set(scenarios.flatMap((s) => s.steps.map((step) => step.do))), new Set(["stream", "attach"]));
  });

  for (const scenario of scenarios) {
    test(`client scenario ${scenario.id}: ${scenario.about}`, { timeout: 30000 }, async () => {
      assert.deepEqual(await play(scenario, server), []);
    });
  }

  test("a client scenario whose expectation is wrong fails", { timeout: 30000 }, async () => {
    const scenario = structuredClone(scenarios.find((s) => s.name === "read-again-after-a-cursor")!);
    scenario.steps[1]!.events[1] = ["delta", 4, "t4 "]; // the text of seq 5
    assert.deepEqual(await play(scenario, server), [`step 1 (attach): event 1: expected ["delta",4,"t4 "], got ["delta",4,"t3 "]`]);
  });
});
