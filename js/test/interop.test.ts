// The SDK's Client over McpWsTransport against the real Python server (tests/apps.py).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { McpError } from "@modelcontextprotocol/sdk/types.js";

import { HandshakeError } from "../src/index.js";
import { type PythonServer, connectClient, startServer, textOf, waitFor } from "./server.js";

describe("the SDK Client over McpWsTransport", { timeout: 120000 }, () => {
  let server: PythonServer;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  test("lists and calls tools", async () => {
    const { client, transport } = await connectClient(server.url);
    assert.equal(transport.subprotocol, "mcp-ws.v1");
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === "add"));
    const result = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
    assert.equal(textOf(result), "5");
    assert.deepEqual(result.structuredContent, { result: 5 });
    await client.close();
  });

  test("progress arrives in order before the result", async () => {
    const { client } = await connectClient(server.url);
    const seen: number[] = [];
    const result = await client.callTool({ name: "progress", arguments: { steps: 20 } }, undefined, {
      onprogress: (p) => seen.push(p.progress),
    });
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal(textOf(result), "20 steps");
    await client.close();
  });

  test("a request larger than a frame and a window is fragmented for the server", async () => {
    const { client } = await connectClient(server.url);
    const text = "é".repeat(300_000); // 600,000 bytes: 10 frames, past the 256 KiB window
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text } })), text);
    await client.close();
  });

  test("64 concurrent calls all answer", async () => {
    const { client } = await connectClient(server.url);
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) => client.callTool({ name: "echo", arguments: { text: `call ${i}` } })),
    );
    assert.deepEqual(results.map(textOf), Array.from({ length: 64 }, (_, i) => `call ${i}`));
    await client.close();
  });

  test("an AbortSignal cancels the server's handler and the session stays usable", async () => {
    const { client } = await connectClient(server.url);
    const controller = new AbortController();
    const call = client.callTool({ name: "sleepy", arguments: { seconds: 30 } }, undefined, { signal: controller.signal });
    await waitFor(async () => textOf(await client.callTool({ name: "probe_state", arguments: {} })).includes("started"));
    controller.abort("the user pressed stop");
    await assert.rejects(call);
    await waitFor(async () => textOf(await client.callTool({ name: "probe_state", arguments: {} })).includes("cancelled"));
    assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 1, b: 1 } })), "2");
    await client.close();
  });

  test("sampling and elicitation from inside a tool are answered by the client's handlers", async () => {
    const { CreateMessageRequestSchema, ElicitRequestSchema } = await import("@modelcontextprotocol/sdk/types.js");
    const { client } = await connectClient(server.url, {}, { sampling: {}, elicitation: {} });
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
      role: "assistant",
      content: { type: "text", text: `echo: ${(request.params.messages[0]!.content as { text: string }).text}` },
      model: "test",
    }));
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "Ada" } }));
    assert.equal(textOf(await client.callTool({ name: "ask_model", arguments: { question: "hi" } })), "echo: hi");
    assert.equal(textOf(await client.callTool({ name: "ask_user", arguments: {} })), "accept:Ada");
    await client.close();
  });

  test("a 32 MiB result arrives while small calls keep flowing", async () => {
    const { client } = await connectClient(server.url);
    const size = 32 * 1024 * 1024;
    const big = client.callTool({ name: "big", arguments: { size } }, undefined, { timeout: 60000 });
    let small = 0;
    let bigDone = false;
    const smalls = (async () => {
      while (!bigDone && small < 1000) {
        assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: small, b: 1 } })), String(small + 1));
        small += 1;
      }
    })();
    const result = await big;
    bigDone = true;
    await smalls;
    assert.equal(textOf(result).length, size);
    assert.ok(small >= 3, `only ${small} small calls during the big one`);
    await client.close();
  });

  test("a wrong token is refused at the handshake", async () => {
    const guarded = await startServer(["--token", "s3cret"]);
    try {
      await assert.rejects(connectClient(guarded.url, { token: "wrong" }), HandshakeError);
      await assert.rejects(connectClient(guarded.url), HandshakeError);
      const { client } = await connectClient(guarded.url, { token: "s3cret" });
      assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 1, b: 2 } })), "3");
      await client.close();
      // as a browser sends it: the mcp-ws.bearer.<token> subprotocol, never echoed back
      const browserLike = await connectClient(guarded.url, { token: "s3cret", tokenIn: "subprotocol" });
      assert.equal(browserLike.transport.subprotocol, "mcp-ws.v1");
      assert.equal(textOf(await browserLike.client.callTool({ name: "add", arguments: { a: 2, b: 2 } })), "4");
      await browserLike.client.close();
      await assert.rejects(connectClient(guarded.url, { token: "wrong", tokenIn: "subprotocol" }), HandshakeError);
    } finally {
      await guarded.stop();
    }
  });

  test("the server killed mid-call rejects every pending call promptly", async () => {
    const doomed = await startServer();
    // Without resume (with it the client waits for the server's grace: test/resume.test.ts).
    const { client } = await connectClient(doomed.url, { resume: false });
    const calls = Array.from({ length: 10 }, () => client.callTool({ name: "sleepy", arguments: { seconds: 60 } }));
    const settled = Promise.allSettled(calls);
    await new Promise((resolve) => setTimeout(resolve, 200)); // all sent, the handlers running
    const killed = performance.now();
    await doomed.stop();
    const outcomes = await settled;
    assert.ok(performance.now() - killed < 5000);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, "rejected");
      const error = (outcome as PromiseRejectedResult).reason as McpError;
      assert.ok(error instanceof McpError, String(error));
      assert.equal(error.code, -32000);
    }
  });
});

describe("handover", { timeout: 60000 }, () => {
  test("after a graceful GOAWAY new calls move to a new connection, calls in flight finish", async () => {
    const server = await startServer();
    try {
      const { client, transport } = await connectClient(server.url);
      assert.equal(textOf(await client.callTool({ name: "client_name" })), "interop");
      const slow = client.callTool({ name: "sleepy", arguments: { seconds: 1 } });
      assert.equal(textOf(await client.callTool({ name: "go_away" })), "going away");
      assert.equal(transport.connections, 1);
      const moved = await client.callTool({ name: "add", arguments: { a: 2, b: 3 } });
      assert.equal(textOf(moved), "5");
      assert.equal(transport.connections, 2);
      // The new connection replayed initialize: the server knows this client there too.
      assert.equal(textOf(await client.callTool({ name: "client_name" })), "interop");
      assert.equal(textOf(await slow), "rested"); // finished on the connection going away
      await client.close();
    } finally {
      await server.stop();
    }
  });

  test("without handover, requests after a GOAWAY are refused", async () => {
    const server = await startServer();
    try {
      const { client, transport } = await connectClient(server.url, { handover: false });
      await client.callTool({ name: "go_away" });
      await assert.rejects(client.callTool({ name: "add", arguments: { a: 1, b: 1 } }), McpError);
      assert.equal(transport.connections, 1);
      await client.close();
    } finally {
      await server.stop();
    }
  });

  test("after a lost connection the next request reaches a new server at the same URL", async () => {
    const first = await startServer();
    const port = new URL(first.url).port;
    // Without resume (with it: test/resume.test.ts, a server restarted between cut and resume).
    const { client, transport } = await connectClient(first.url, { resume: false });
    const lost: Error[] = [];
    transport.onconnectionlost = (error) => lost.push(error);
    const pending = client.callTool({ name: "sleepy", arguments: { seconds: 30 } });
    const failure = pending.then(
      () => undefined,
      (error: unknown) => error,
    ); // handled now: it fails while the server stops
    await new Promise((resolve) => setTimeout(resolve, 200));
    await first.stop();
    const error = await failure;
    assert.ok(error instanceof McpError, String(error));
    assert.equal(error.code, -32000);
    assert.equal(lost.length, 1);
    const second = await startServer(["--port", port]);
    try {
      assert.equal(second.url, first.url);
      const result = await client.callTool({ name: "add", arguments: { a: 20, b: 22 } });
      assert.equal(textOf(result), "42");
      assert.equal(transport.connections, 2);
      await client.close();
    } finally {
      await second.stop();
    }
  });
});

describe("the JSON-text fallback", { timeout: 60000 }, () => {
  test("a server that picks `mcp` is spoken to in JSON text frames", async () => {
    const server = await startServer();
    try {
      const { client, transport } = await connectClient(server.url, { subprotocols: ["mcp"] });
      assert.equal(transport.subprotocol, "mcp");
      assert.equal(transport.core, undefined);
      assert.equal(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 2 } })), "4");
      await client.close();
    } finally {
      await server.stop();
    }
  });
});
