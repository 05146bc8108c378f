// streamTool against the real Python server: order, aggregate, exactly one terminal
// event, cancel, and backpressure (credit as the iterator is pulled).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { type StreamEvent, ToolCallError, streamTool } from "../src/index.js";
import { type PythonServer, connectClient, startServer, textOf, waitFor } from "./server.js";
import { benchHttp } from "./servers.js";

async function collect(stream: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

/** Started first, deltas with seq 1, 2, ... and no gap, exactly one terminal, last. */
function checkShape(events: StreamEvent[]): Extract<StreamEvent, { type: "delta" }>[] {
  assert.equal(events[0]?.type, "start");
  const terminals = events.filter((e) => e.type === "completed" || e.type === "failed");
  assert.equal(terminals.length, 1);
  assert.equal(events.at(-1), terminals[0]);
  const deltas = events.filter((e): e is Extract<StreamEvent, { type: "delta" }> => e.type === "delta");
  assert.deepEqual(deltas.map((d) => d.seq), Array.from({ length: deltas.length }, (_, i) => i + 1));
  assert.equal(deltas.length, events.length - 2);
  return deltas;
}

async function sent(client: Awaited<ReturnType<typeof connectClient>>["client"]): Promise<number> {
  return Number(textOf(await client.callTool({ name: "sent", arguments: {} })));
}

describe("streamTool over McpWsTransport", { timeout: 120000 }, () => {
  let server: PythonServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  test("deltas in order, then one completed whose text is the deltas' text", async () => {
    const { client } = await connectClient(server.url);
    const stream = streamTool(client, "generate", { count: 300 });
    const events = await collect(stream);
    assert.ok(stream.direct, "mcp-ws carried the deltas on the call's stream");
    const deltas = checkShape(events);
    assert.equal(deltas.length, 300);
    const expected = Array.from({ length: 300 }, (_, i) => `t${i} `).join("");
    assert.equal(deltas.map((d) => d.text).join(""), expected);
    const final = events.at(-1)!;
    assert.equal(final.type, "completed");
    assert.equal(textOf((final as { result: unknown }).result), expected);
    assert.equal(stream.text, expected);
    assert.deepEqual(((final as { result: { _meta?: unknown } }).result._meta as Record<string, unknown>)["io.github.mcp-ws/streaming"], { lastSeq: 300 });
    await client.close();
  });

  test("binary and structured deltas, and the start event's meta", async () => {
    const { client } = await connectClient(server.url);
    const events = await collect(streamTool(client, "mixed"));
    const deltas = checkShape(events);
    const handle = (events[0] as { handle?: unknown }).handle;
    assert.ok(typeof handle === "string", "every streamed call has a handle");
    assert.deepEqual(events[0], { type: "start", meta: { model: "test-1" }, handle });
    assert.deepEqual(deltas[1]!.content, [{ type: "image", data: "AAH/UE5H", mimeType: "image/png" }]);
    assert.deepEqual(deltas.slice(-2).map((d) => d.structuredContent), [{ rows: 1 }, { done: true }]);
    await client.close();
  });

  test("a tool error after deltas is one failed event holding the answer", async () => {
    const { client } = await connectClient(server.url);
    const events = await collect(streamTool(client, "stream_then_fail"));
    checkShape(events);
    const failed = events.at(-1)!;
    assert.equal(failed.type, "failed");
    const error = (failed as { error: Error }).error;
    assert.ok(error instanceof ToolCallError);
    assert.match(error.message, /the model fell over/);
    assert.equal(error.result.isError, true);
    await client.close();
  });

  test("leaving the loop early cancels the producer on the server", async () => {
    const { client } = await connectClient(server.url);
    let seen = 0;
    for await (const event of streamTool(client, "generate", { count: 100000, pause: 0.005 })) {
      if (event.type === "delta" && ++seen === 5) break;
    }
    // the producer stops: its count settles (a producer that went on would take minutes)
    let stopped = -1;
    await waitFor(async () => {
      const now = await sent(client);
      const still = now === stopped;
      stopped = now;
      await new Promise((resolve) => setTimeout(resolve, 200));
      return still;
    });
    assert.ok(stopped < 5000, `the producer got ${stopped} deltas out before it stopped`);
    await client.close();
  });

  test("an AbortSignal ends the stream with one failed event", async () => {
    const { client } = await connectClient(server.url);
    const controller = new AbortController();
    const events: StreamEvent[] = [];
    for await (const event of streamTool(client, "generate", { count: 100000, pause: 0.005 }, { signal: controller.signal })) {
      events.push(event);
      if (events.length === 3) controller.abort("stop");
    }
    checkShape(events);
    assert.equal(events.at(-1)!.type, "failed");
    await client.close();
  });

  test("a consumer that stops pulling stalls the producer within one window; other calls flow", async () => {
    const { client, transport } = await connectClient(server.url);
    const size = 16384;
    const stream = streamTool(client, "bulk", { chunks: 1000, size });
    const iterator = stream[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.type, "start");
    assert.equal((await iterator.next()).value?.type, "delta");
    // nobody pulls any more: the producer must stop once the stream's window is full
    let last = -1;
    await waitFor(async () => {
      const now = await sent(client);
      const still = now === last && now > 0;
      last = now;
      await new Promise((resolve) => setTimeout(resolve, 100));
      return still;
    });
    const window = transport.core!.localSettings.initial_window;
    assert.ok(last <= window / size + 3, `the producer ran ${last} deltas ahead`);
    assert.ok(transport.core!.bufferedReceived <= window);
    // other calls on the connection still answer
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 40, b: 2 } })), "42");
    // pulling again lets it go on
    for (let i = 0; i < 40; i++) await iterator.next();
    await waitFor(async () => (await sent(client)) > last);
    await iterator.return!();
    await client.close();
  });
});

describe("streamTool over the SDK's streamable HTTP transport", { timeout: 60000 }, () => {
  test("falls back to partial-result notifications, same guarantees", async () => {
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const { StreamableHTTPClientTransport } = await import("@modelcontextprotocol/sdk/client/streamableHttp.js");
    const http = await benchHttp();
    try {
      const client = new Client({ name: "fallback", version: "0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(http.url)));
      const stream = streamTool(client, "stream", { count: 200 });
      const events = await collect(stream);
      assert.equal(stream.direct, false);
      const deltas = checkShape(events);
      assert.equal(deltas.length, 200);
      const final = events.at(-1)!;
      assert.equal(final.type, "completed");
      assert.equal(deltas.map((d) => d.text).join(""), "x".repeat(8 * 200)); // 200 deltas of 8 characters
      assert.equal(textOf((final as { result: unknown }).result), "200 deltas");
      await client.close();
    } finally {
      await http.stop();
    }
  });
});
