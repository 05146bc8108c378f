// attachStream against the real Python server (docs/streaming.md, "Re-attach"): the start
// event's handle, reading a call again after a cursor from another client, a call that
// outlives its vanished client, leaving early, cancelling through a reader, the errors.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { McpError } from "@modelcontextprotocol/sdk/types.js";

import { EVENTS_GONE, type StreamEvent, UNKNOWN_HANDLE, attachStream, streamTool } from "../src/index.js";
import { CutRelay } from "./relay.js";
import { type PythonServer, connectClient, startServer, stopChild, textOf } from "./server.js";

type Delta = Extract<StreamEvent, { type: "delta" }>;

async function collect(stream: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

function deltas(events: StreamEvent[]): Delta[] {
  return events.filter((e): e is Delta => e.type === "delta");
}

function failureCode(event: StreamEvent | undefined): number | undefined {
  assert.equal(event?.type, "failed");
  const error = (event as { error: unknown }).error;
  assert.ok(error instanceof McpError, `an McpError, got ${String(error)}`);
  return error.code;
}

const TOKENS = Array.from({ length: 60 }, (_, i) => `t${i} `).join("");

/** A 60-token `generate` call through a relay to `url`, whose client vanishes after
 * 5 deltas (its link is cut: no cancel reaches the server): what it saw, its stream. */
async function vanishAfterFive(url: string): Promise<{ seen: StreamEvent[]; stream: ReturnType<typeof streamTool> }> {
  const relay = await new CutRelay(Number(new URL(url).port)).listen();
  const { client } = await connectClient(relay.url(), { resume: false });
  const seen: StreamEvent[] = [];
  const stream = streamTool(client, "generate", { count: 60, pause: 0.01 });
  try {
    for await (const event of stream) {
      seen.push(event);
      if (seen.length === 6) {
        relay.cut();
        break;
      }
    }
  } finally {
    await client.close().catch(() => undefined);
    await relay.close();
  }
  return { seen, stream };
}

describe("attachStream over McpWsTransport", { timeout: 120000 }, () => {
  let server: PythonServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  test("the start event has the handle; another client reads the call after a cursor", async () => {
    const { client } = await connectClient(server.url);
    const stream = streamTool(client, "generate", { count: 20 });
    const events = await collect(stream);
    const start = events[0];
    assert.equal(start?.type, "start");
    const handle = (start as { handle?: string }).handle;
    assert.ok(typeof handle === "string" && handle.length >= 32);
    assert.equal(stream.handle, handle);
    const other = (await connectClient(server.url)).client;
    const attached = attachStream(other, handle, { after: 15 });
    const again = await collect(attached);
    assert.ok(attached.direct, "the attach request's own stream carried the deltas");
    assert.deepEqual(again[0], { type: "start", handle });
    assert.deepEqual(deltas(again).map((d) => d.seq), [16, 17, 18, 19, 20]);
    assert.deepEqual(deltas(again).map((d) => d.text), ["t15 ", "t16 ", "t17 ", "t18 ", "t19 "]);
    assert.equal(again.at(-1)?.type, "completed");
    assert.deepEqual((again.at(-1) as { result: unknown }).result, (events.at(-1) as { result: unknown }).result);
    await client.close();
    await other.close();
  });

  test("a client that vanished mid-answer: a new one reads on, no token twice", async () => {
    const { seen, stream } = await vanishAfterFive(server.url);
    const handle = stream.handle!;
    assert.equal(stream.lastSeq, 5);
    const other = (await connectClient(server.url)).client;
    const rest = await collect(attachStream(other, handle, { after: stream.lastSeq }));
    assert.equal(rest.at(-1)?.type, "completed");
    const shown = [...deltas(seen), ...deltas(rest)].map((d) => d.text).join("");
    assert.equal(shown, TOKENS);
    assert.equal(textOf((rest.at(-1) as { result: unknown }).result), TOKENS);
    await other.close();
  });

  test("leaving an attached loop detaches; cancel() through a reader cancels the call", async () => {
    const { client } = await connectClient(server.url);
    const other = (await connectClient(server.url)).client;
    const call = streamTool(client, "generate", { count: 100000, pause: 0.01 });
    const first = await call.next();
    const handle = (first.value as { handle: string }).handle;
    for await (const event of attachStream(other, handle)) {
      if (event.type === "delta" && event.seq === 3) break; // only this reader goes
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const next = await call.next(); // the call goes on
    assert.equal(next.value?.type, "delta");
    const reader = attachStream(other, handle, { after: 5 });
    const events: StreamEvent[] = [];
    for await (const event of reader) {
      events.push(event);
      if (events.length === 2) reader.cancel();
    }
    assert.equal(failureCode(events.at(-1)), -32003);
    const rest = await collect(call);
    assert.equal(rest.at(-1)?.type, "failed"); // the caller sees its call end too
    await client.close();
    await other.close();
  });

  test("unknown, malformed and bad cursors fail with the documented codes", async () => {
    const { client } = await connectClient(server.url);
    const done = await collect(streamTool(client, "generate", { count: 3 }));
    const handle = (done[0] as { handle: string }).handle;
    const unknown = await collect(attachStream(client, "x".repeat(32)));
    assert.equal(unknown.length, 1);
    assert.equal(failureCode(unknown[0]), UNKNOWN_HANDLE);
    assert.equal(failureCode((await collect(attachStream(client, 12345 as unknown as string)))[0]), UNKNOWN_HANDLE);
    assert.equal(failureCode((await collect(attachStream(client, handle, { after: -1 })))[0]), -32602);
    const fine = await collect(attachStream(client, handle, { after: 2 })); // nothing else affected
    assert.deepEqual(deltas(fine).map((d) => d.seq), [3]);
    assert.equal(EVENTS_GONE, -32006);
    await client.close();
  });
});

describe("a refused resume reads streamed calls on by their handles", { timeout: 60000 }, () => {
  test("the answer completes once over a new connection; the tool ran once", async () => {
    const server = await startServer(["--refuse-resumes"]); // keeps no detached connection
    const relay = await new CutRelay(Number(new URL(server.url).port)).listen();
    try {
      const { client, transport } = await connectClient(relay.url());
      const states: string[] = [];
      transport.onlinkstate = (state) => states.push(state);
      const events: StreamEvent[] = [];
      for await (const event of streamTool(client, "tagged", { tag: "j", count: 60, pause: 0.01 })) {
        events.push(event);
        if (events.length === 6) relay.cut();
      }
      assert.equal(events.at(-1)?.type, "completed", JSON.stringify(events.at(-1)));
      assert.deepEqual(deltas(events).map((d) => d.seq), Array.from({ length: 60 }, (_, i) => i + 1));
      assert.equal(deltas(events).map((d) => d.text).join(""), Array.from({ length: 60 }, (_, i) => `j.${i} `).join(""));
      assert.ok(states.includes("lost"), `the resume was refused: ${states.join(", ")}`);
      const runs = JSON.parse(textOf(await client.callTool({ name: "runs", arguments: {} }))) as Record<string, number>;
      assert.deepEqual(runs, { j: 1 });
      await client.close();
    } finally {
      await relay.close();
      await server.stop();
    }
  });
});

/** A free TCP port on loopback (redis-server takes no port 0). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Debian's redis-server on loopback, no persistence, in a folder of its own. */
async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mcp-ws-redis-"));
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  const child: ChildProcess = spawn("redis-server", args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => (out += chunk.toString()));
  const deadline = performance.now() + 20000;
  while (!out.includes("Ready to accept connections")) {
    if (performance.now() > deadline || child.exitCode !== null) throw new Error(`redis-server did not start: ${out}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("attachStream across two servers sharing one Redis store", { timeout: 90000 }, () => {
  let redis: { url: string; stop(): Promise<void> };
  let first: PythonServer;
  let second: PythonServer;
  before(async () => {
    redis = await startRedis();
    [first, second] = await Promise.all([startServer(["--store", redis.url]), startServer(["--store", redis.url])]);
  });
  after(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
    await redis?.stop();
  });

  test("a client that vanished from one server: a new one reads on through the other", async () => {
    const { seen, stream } = await vanishAfterFive(first.url);
    const other = (await connectClient(second.url)).client;
    const rest = await collect(attachStream(other, stream.handle!, { after: stream.lastSeq }));
    assert.deepEqual(rest[0], { type: "start", handle: stream.handle });
    assert.deepEqual(deltas(rest).map((d) => d.seq), Array.from({ length: 55 }, (_, i) => i + 6));
    assert.equal(rest.at(-1)?.type, "completed");
    assert.equal([...deltas(seen), ...deltas(rest)].map((d) => d.text).join(""), TOKENS);
    assert.equal(textOf((rest.at(-1) as { result: unknown }).result), TOKENS);
    await other.close();
  });

  test("cancel() through a reader on the other server cancels the call where it runs", async () => {
    const { client } = await connectClient(first.url);
    const other = (await connectClient(second.url)).client;
    const call = streamTool(client, "generate", { count: 100000, pause: 0.01 });
    const start = await call.next();
    assert.equal(start.value?.type, "start");
    const reader = attachStream(other, call.handle!, { after: 0 });
    const events: StreamEvent[] = [];
    for await (const event of reader) {
      events.push(event);
      if (events.length === 3) reader.cancel();
    }
    assert.equal(failureCode(events.at(-1)), -32003);
    const rest = await collect(call);
    assert.equal(failureCode(rest.at(-1)), -32003); // the caller sees its call cancelled
    const unknown = await collect(attachStream(other, "x".repeat(32)));
    assert.equal(failureCode(unknown[0]), UNKNOWN_HANDLE); // nothing else affected
    await client.close();
    await other.close();
  });
});
