// attachStream against the real Python server (docs/streaming.md, "Re-attach"): the start
// event's handle, reading a call again after a cursor from another client, a call that
// outlives its vanished client, leaving early, cancelling through a reader, the errors.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { McpError } from "@modelcontextprotocol/sdk/types.js";

import { EVENTS_GONE, type StreamEvent, UNKNOWN_HANDLE, attachStream, streamTool } from "../src/index.js";
import { CutRelay } from "./relay.js";
import { type PythonServer, connectClient, startServer, textOf } from "./server.js";

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
    const relay = await new CutRelay(Number(new URL(server.url).port)).listen();
    try {
      const { client } = await connectClient(relay.url(), { resume: false });
      const seen: StreamEvent[] = [];
      const stream = streamTool(client, "generate", { count: 60, pause: 0.01 });
      for await (const event of stream) {
        seen.push(event);
        if (seen.length === 6) {
          relay.cut(); // no cancel reaches the server
          break;
        }
      }
      const handle = stream.handle!;
      assert.equal(stream.lastSeq, 5);
      const other = (await connectClient(server.url)).client;
      const rest = await collect(attachStream(other, handle, { after: stream.lastSeq }));
      assert.equal(rest.at(-1)?.type, "completed");
      const shown = [...deltas(seen), ...deltas(rest)].map((d) => d.text).join("");
      assert.equal(shown, TOKENS);
      assert.equal(textOf((rest.at(-1) as { result: unknown }).result), TOKENS);
      await other.close();
      await client.close().catch(() => undefined);
    } finally {
      await relay.close();
    }
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
