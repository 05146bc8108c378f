// The README's TypeScript quickstart against `mcp-ws serve`, as a newcomer runs it, and
// keepalive against a server that goes silent.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import WebSocket from "ws";

import { McpWsTransport, type WebSocketConstructor, streamTool } from "../src/index.js";
import { connectClient, spawnPython, startServer, textOf } from "./server.js";

test("the README quickstart works against mcp-ws serve", { timeout: 60000 }, async () => {
  const serve = await spawnPython(["-m", "mcp_ws", "serve", "tests.apps:build_app", "--port", "0"], /serving .* at (ws:\/\/\S+)/);
  try {
    const url = serve.found;
    // as the README has it
    const client = new Client({ name: "app", version: "1.0.0" });
    await client.connect(new McpWsTransport(url, { WebSocket: WebSocket as unknown as WebSocketConstructor }));
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } })), "5");
    let text = "";
    for await (const event of streamTool(client, "generate", { count: 5 })) {
      if (event.type === "delta") text += event.text ?? "";
    }
    assert.equal(text, "t0 t1 t2 t3 t4 ");
    await client.close();
  } finally {
    await serve.stop();
  }
});

test("a server that goes silent fails the pending call by keepalive in 2 x interval + 5 s", { timeout: 60000 }, async () => {
  const server = await startServer();
  try {
    // Without resume: with it the dead link is resumed on a new one for the grace period.
    const { client } = await connectClient(server.url, { settings: { ping_interval: 0.5 }, resume: false });
    server.process.kill("SIGSTOP");
    const stopped = performance.now();
    try {
      await assert.rejects(client.callTool({ name: "echo", arguments: { text: "anyone?" } }, undefined, { timeout: 20000 }), (error: unknown) => {
        assert.ok(error instanceof McpError);
        assert.equal(error.code, -32000);
        assert.match(error.message, /TIMEOUT/);
        return true;
      });
    } finally {
      server.process.kill("SIGCONT");
    }
    const seconds = (performance.now() - stopped) / 1000;
    assert.ok(seconds >= 5 && seconds < 8, `declared dead after ${seconds.toFixed(1)} s`);
  } finally {
    await server.stop();
  }
});
