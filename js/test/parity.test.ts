// Client parity: the rows of docs/parity.md that the TypeScript client keeps, each also
// tested in the Python suite (tests/sdk/test_parity.py) with the same words.
import assert from "node:assert/strict";
import { type Socket, createServer } from "node:net";
import { test } from "node:test";

import { McpError } from "@modelcontextprotocol/sdk/types.js";
import WebSocket from "ws";

import { HandshakeError, McpWsTransport, type WebSocketConstructor, streamTool } from "../src/index.js";
import { connectClient, startServer, textOf } from "./server.js";

/** What a call in flight fails with when its server dies (tests/sdk/test_parity.py: LOST). */
const LOST = "connection closed (INTERNAL_ERROR from the peer, WebSocket 1006): the connection was lost (WebSocket 1006)";

test("a server that never answers the handshake is a HandshakeError, and the process lives on", { timeout: 20000 }, async () => {
  const held: Socket[] = [];
  const server = createServer((socket) => held.push(socket)); // accepts, never answers
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address && typeof address === "object");
  const url = `ws://127.0.0.1:${address.port}/mcp`;
  const uncaught: unknown[] = [];
  const record = (error: unknown): void => void uncaught.push(error);
  process.on("uncaughtException", record);
  try {
    const transport = new McpWsTransport(url, { WebSocket: WebSocket as unknown as WebSocketConstructor, connectTimeoutMs: 300 });
    await assert.rejects(transport.start(), (error: unknown) => {
      assert.ok(error instanceof HandshakeError);
      assert.equal(error.message, `no WebSocket handshake with ${url} within 300 ms`);
      return true;
    });
    // The socket closed while still connecting reports an error after the rejection:
    // nothing may be left to throw it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(uncaught, []);
    assert.equal(held.length, 1);
  } finally {
    process.off("uncaughtException", record);
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("streamTool streams over the JSON-text `mcp` subprotocol too: start, deltas in order, completed", { timeout: 60000 }, async () => {
  const server = await startServer();
  try {
    const { client, transport } = await connectClient(server.url, { subprotocols: ["mcp"] });
    assert.equal(transport.subprotocol, "mcp");
    const events: string[] = [];
    let text = "";
    for await (const event of streamTool(client, "generate", { count: 5 })) {
      events.push(event.type);
      if (event.type === "delta") text += event.text ?? "";
    }
    assert.deepEqual(events, ["start", "delta", "delta", "delta", "delta", "delta", "completed"]);
    assert.equal(text, "t0 t1 t2 t3 t4 ");
    await client.close();
  } finally {
    await server.stop();
  }
});

test("after a graceful GOAWAY the client connects anew at once, not with the next request", { timeout: 60000 }, async () => {
  const server = await startServer();
  try {
    const { client, transport } = await connectClient(server.url);
    assert.equal(textOf(await client.callTool({ name: "go_away" })), "going away");
    const deadline = performance.now() + 5000;
    while (transport.connections < 2) {
      assert.ok(performance.now() < deadline, "no new connection without a request");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })), "5");
    assert.equal(transport.connections, 2);
    await client.close();
  } finally {
    await server.stop();
  }
});

test("a server killed mid-call fails it with -32000 and the Python client's words", { timeout: 60000 }, async () => {
  const server = await startServer();
  // Without resume, as the Python twin (with it: test/resume.test.ts).
  const { client } = await connectClient(server.url, { resume: false });
  const call = client.callTool({ name: "sleepy", arguments: { seconds: 60 } });
  const settled = call.then(
    () => undefined,
    (error: unknown) => error,
  );
  await new Promise((resolve) => setTimeout(resolve, 300)); // sent, its handler running
  await server.stop(); // SIGKILL
  const error = await settled;
  assert.ok(error instanceof McpError, String(error));
  assert.equal(error.code, -32000);
  assert.equal(error.message, `MCP error -32000: ${LOST}`);
});

test("a timeout is one failed event with -32001 (REQUEST_TIMEOUT), as in Python", { timeout: 60000 }, async () => {
  const server = await startServer();
  try {
    const { client } = await connectClient(server.url);
    const kinds: string[] = [];
    let failure: unknown;
    for await (const event of streamTool(client, "generate", { count: 100000, pause: 0.01 }, { timeoutMs: 500 })) {
      kinds.push(event.type);
      if (event.type === "failed") failure = event.error;
    }
    assert.equal(kinds[0], "start");
    assert.equal(kinds.at(-1), "failed");
    assert.equal(kinds.filter((kind) => kind === "failed" || kind === "completed").length, 1);
    assert.ok(failure instanceof McpError, String(failure));
    assert.equal(failure.code, -32001);
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 1, b: 1 } })), "2"); // still usable
    await client.close();
  } finally {
    await server.stop();
  }
});
