// Resume from Node (docs/protocol.md section 9): McpWsTransport against the Python test
// app through a relay that cuts the TCP connections, as tests/sdk/test_resume.py does
// for the Python client.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CreateMessageRequestSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

import { type LinkState, OUTCOME_UNKNOWN, type StreamEvent, streamTool } from "../src/index.js";
import { CutRelay } from "./relay.js";
import { connectClient, startServer, textOf } from "./server.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function expected(tag: string, count: number, ask: boolean): string {
  let text = "";
  for (let i = 0; i < count; i++) {
    if (ask && i === Math.floor(count / 2)) text += `[ok-${tag}] `;
    text += `${tag}.${i} `;
  }
  return text;
}

test("64 calls through random cuts: none lost, repeated or out of order", { timeout: 90000 }, async () => {
  const server = await startServer();
  const relay = await new CutRelay(Number(new URL(server.url).port)).listen();
  try {
    const { client, transport } = await connectClient(relay.url(), {}, { sampling: {} });
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
      role: "assistant",
      content: { type: "text", text: `ok-${(request.params.messages[0]!.content as { text: string }).text}` },
      model: "test",
    }));
    const states: LinkState[] = [];
    transport.onlinkstate = (state) => states.push(state);
    relay.budget = [300, 300000];
    const problems: string[] = [];
    const outcomes = new Map<string, string>();
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 64; i++) {
      const tag = `n${i}`;
      const ask = i % 8 < 2;
      const args = { tag, count: 30, pause: 0.01, ask };
      if (i % 2 === 0) {
        calls.push(
          (async () => {
            const events: StreamEvent[] = [];
            for await (const event of streamTool(client, "tagged", args)) events.push(event);
            const deltas = events.filter((e) => e.type === "delta");
            const last = events.at(-1);
            if (last?.type !== "completed") {
              problems.push(`${tag}: ${last?.type === "failed" ? last.error.message : "no outcome"}`);
              return;
            }
            if (deltas.some((d, k) => d.seq !== k + 1)) problems.push(`${tag}: seqs out of order`);
            const text = deltas.map((d) => d.text ?? "").join("");
            if (text !== textOf(last.result)) problems.push(`${tag}: the deltas do not make the result`);
            outcomes.set(tag, textOf(last.result));
          })(),
        );
      } else {
        calls.push(
          client.callTool({ name: "tagged", arguments: args }).then(
            (result) => void outcomes.set(tag, textOf(result)),
            (error: unknown) => void problems.push(`${tag}: ${String(error)}`),
          ),
        );
      }
    }
    const cutter = (async () => {
      for (let n = 0; n < 12; n++) {
        await sleep(50 + Math.random() * 100);
        relay.cut();
      }
    })();
    await Promise.all([...calls, cutter]);
    assert.deepEqual(problems, []);
    for (let i = 0; i < 64; i++) assert.equal(outcomes.get(`n${i}`), expected(`n${i}`, 30, i % 8 < 2));
    relay.budget = undefined;
    const runs = JSON.parse(textOf(await client.callTool({ name: "runs", arguments: {} }))) as Record<string, number>;
    for (let i = 0; i < 64; i++) assert.equal(runs[`n${i}`], 1, `n${i} ran ${runs[`n${i}`]} times`);
    assert.equal(transport.connections, 1); // one connection, resumed, never replaced
    assert.ok(relay.cuts >= 10, `${relay.cuts} cuts`);
    assert.ok(!states.includes("lost"));
    assert.ok(states.filter((s) => s === "recovered").length >= 3, states.join(","));
    await client.close();
  } finally {
    await relay.close();
    await server.stop();
  }
});

test("a streamed answer continues after cuts, and onlinkstate says so", { timeout: 60000 }, async () => {
  const server = await startServer();
  const relay = await new CutRelay(Number(new URL(server.url).port)).listen();
  try {
    const { client, transport } = await connectClient(relay.url());
    const states: LinkState[] = [];
    transport.onlinkstate = (state) => states.push(state);
    const seqs: number[] = [];
    let result = "";
    for await (const event of streamTool(client, "tagged", { tag: "a", count: 200, pause: 0.002 })) {
      if (event.type === "delta") {
        seqs.push(event.seq);
        if (event.seq === 20 || event.seq === 120) relay.cut();
      } else if (event.type === "completed") result = textOf(event.result);
    }
    assert.deepEqual(seqs, Array.from({ length: 200 }, (_, k) => k + 1));
    assert.equal(result, expected("a", 200, false));
    // The stream's own events can outrun the resume: wait for the second "recovered".
    for (let n = 0; n < 100 && states.length < 4; n++) await sleep(20);
    assert.deepEqual(states, ["recovering", "recovered", "recovering", "recovered"]);
    await client.close();
  } finally {
    await relay.close();
    await server.stop();
  }
});

test("a server restarted between cut and resume: -32004, then new calls work", { timeout: 60000 }, async () => {
  const first = await startServer();
  const port = Number(new URL(first.url).port);
  const relay = await new CutRelay(port).listen();
  let second: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    const { client, transport } = await connectClient(relay.url());
    const states: LinkState[] = [];
    transport.onlinkstate = (state) => states.push(state);
    const call = client.callTool({ name: "sleepy", arguments: { seconds: 30 } }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await sleep(300);
    relay.closed = true; // unreachable for a moment
    relay.cut();
    await first.stop();
    second = await startServer([]); // a new process, on another port: the relay points there
    relay.upstream = Number(new URL(second.url).port);
    relay.closed = false;
    const error = await call;
    assert.ok(error instanceof McpError, String(error));
    assert.equal(error.code, OUTCOME_UNKNOWN);
    assert.match(error.message, /outcome unknown: resume refused/);
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 1, b: 2 } })), "3");
    assert.equal(transport.connections, 2);
    assert.deepEqual(states, ["recovering", "lost"]);
    await client.close();
  } finally {
    await relay.close();
    await second?.stop();
  }
});
