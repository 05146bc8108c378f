// McpWsTransport against a fake WebSocket: what the `ws` package may do, deterministically.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Connection, ErrorCode, McpWsTransport, type WebSocketConstructor, type WebSocketLike } from "../src/index.js";

/** A WebSocket whose server speaks through a sans-I/O server Connection, and which emits
 * `open` and the server's first message in the same tick, as `ws` can. */
class SameTickSocket implements WebSocketLike {
  binaryType = "blob";
  protocol = "";
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly server = new Connection("server");
  readonly fromClient: Uint8Array[] = [];

  constructor() {
    setTimeout(() => {
      this.protocol = "mcp-ws.v1";
      this.readyState = 1;
      this.onopen?.({});
      for (const message of this.server.dataToSend()) {
        this.onmessage?.({ data: message.slice().buffer }); // same tick: the HELLO
      }
    }, 0);
  }

  send(data: string | ArrayBufferLike | Uint8Array): void {
    this.fromClient.push(data as Uint8Array);
  }

  close(): void {
    this.readyState = 3;
  }
}

test("a HELLO delivered in the same tick as the open event is not lost", async () => {
  let socket: SameTickSocket | undefined;
  const Fake = class extends SameTickSocket {
    constructor() {
      super();
      socket = this;
    }
  };
  const transport = new McpWsTransport("ws://fake/mcp", { WebSocket: Fake as unknown as WebSocketConstructor });
  await transport.start();
  assert.equal(transport.core?.peerHelloReceived, true);
  assert.ok(socket!.fromClient.length >= 1, "our HELLO went out at once");
  const ended: string[] = [];
  transport.onclose = () => ended.push("closed");
  transport.onconnectionlost = () => ended.push("lost");
  socket!.onclose?.({ code: 1006, reason: "" });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(ended, ["lost"]); // with handover the transport lives on: it reconnects
  await transport.close();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(ended, ["lost", "closed"]);
});

test("without handover a lost WebSocket closes the transport", async () => {
  let socket: SameTickSocket | undefined;
  const Fake = class extends SameTickSocket {
    constructor() {
      super();
      socket = this;
    }
  };
  const options = { WebSocket: Fake as unknown as WebSocketConstructor, handover: false };
  const transport = new McpWsTransport("ws://fake/mcp", options);
  await transport.start();
  const ended: string[] = [];
  transport.onclose = () => ended.push("closed");
  transport.onconnectionlost = () => ended.push("lost");
  socket!.onclose?.({ code: 1006, reason: "" });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(ended, ["closed"]);
});

test("a server that sends every connection away at once is not reconnected to in a loop", async () => {
  let opened = 0;
  const Away = class extends SameTickSocket {
    constructor() {
      super();
      opened += 1;
      this.server.close(ErrorCode.NO_ERROR, "not here"); // its GOAWAY follows its HELLO
    }
  };
  const transport = new McpWsTransport("ws://fake/mcp", { WebSocket: Away as unknown as WebSocketConstructor });
  await transport.start();
  // Each connection lasted no time, so each counts as a failed attempt: the waits grow
  // (0.05-0.15 s, then 0.1-0.3 s, ...), instead of a new connection every tick.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(opened <= 3, `${opened} connections in 0.3 s`);
  await new Promise((resolve) => setTimeout(resolve, 1200));
  assert.ok(opened >= 2, `it did move on (${opened})`);
  assert.ok(opened <= 6, `${opened} connections in 1.5 s`);
  await transport.close();
});
