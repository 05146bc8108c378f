// Client parity: the rows of docs/parity.md that the TypeScript client keeps, each also
// tested in the Python suite (tests/test_parity.py) with the same words.
import assert from "node:assert/strict";
import { type Socket, createServer } from "node:net";
import { test } from "node:test";

import WebSocket from "ws";

import { HandshakeError, McpWsTransport, type WebSocketConstructor } from "../src/index.js";

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
