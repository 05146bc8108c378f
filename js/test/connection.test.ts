// The sans-I/O core: a client and a server Connection wired back to back with a fake
// clock. Fragmentation, the credit rule, cancels, pings, keepalive, GOAWAY, bad input.
import assert from "node:assert/strict";
import { test } from "node:test";

import { encode } from "@msgpack/msgpack";

import { Connection, ErrorCode, type Event, type Settings, decodeMessage, receiveMemoryBound } from "../src/index.js";

class Pair {
  now = 1000;
  readonly client: Connection;
  readonly server: Connection;
  readonly clientEvents: Event[] = [];
  readonly serverEvents: Event[] = [];

  constructor(client: Partial<Settings> = {}, server: Partial<Settings> = {}) {
    const clock = () => this.now;
    this.client = new Connection("client", client, { clock });
    this.server = new Connection("server", server, { clock });
  }

  /** Move bytes both ways until both sides are quiet. */
  flush(): void {
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const m of this.client.dataToSend()) {
        moved = true;
        this.serverEvents.push(...this.server.receiveData(m));
      }
      for (const m of this.server.dataToSend()) {
        moved = true;
        this.clientEvents.push(...this.client.receiveData(m));
      }
      if (!moved) return;
    }
    throw new Error("the pair did not go quiet");
  }

  messages(events: Event[]): Extract<Event, { kind: "message" }>[] {
    return events.filter((e): e is Extract<Event, { kind: "message" }> => e.kind === "message");
  }
}

const request = (id: number, extra: Record<string, unknown> = {}) => ({ jsonrpc: "2.0", id, method: "tools/call", params: extra });
const note = (text: string) => ({ jsonrpc: "2.0", method: "notifications/message", params: { text } });
const terminated = (events: Event[]) => events.find((e) => e.kind === "terminated") as Extract<Event, { kind: "terminated" }> | undefined;

test("HELLO first, then a request and its response on one odd stream", () => {
  const p = new Pair();
  const sid = p.client.openStream(request(1), true);
  assert.equal(sid, 1);
  p.flush();
  assert.deepEqual(p.serverEvents.map((e) => e.kind), ["hello", "opened", "message", "ended"]);
  p.server.sendMessage(1, { jsonrpc: "2.0", id: 1, result: {} }, true);
  p.flush();
  assert.deepEqual(p.clientEvents.map((e) => e.kind), ["hello", "message", "ended"]);
  assert.equal(p.client.openStreamCount, 0);
});

test("a message larger than a frame is fragmented and reassembled", () => {
  const p = new Pair();
  p.flush();
  const big = "x".repeat(300_000); // above the 64 KiB frames and the 256 KiB window
  p.client.openStream(request(1, { big }), true);
  p.flush();
  const [message] = p.messages(p.serverEvents);
  assert.equal((message!.message["params"] as { big: string }).big, big);
});

test("unread streams hold their own window only: the connection window stays whole", () => {
  const p = new Pair();
  p.client.openStream(request(1), true);
  p.client.openStream(request(2), true);
  p.flush();
  // the server streams 1 MiB on each; the client reads nothing
  for (const sid of [1, 3]) for (let i = 0; i < 64; i++) p.server.sendMessage(sid, note("y".repeat(16000)));
  p.flush();
  const window = p.client.localSettings.initial_window;
  assert.ok(p.client.bufferedReceived <= 2 * window);
  assert.ok(p.client.bufferedReceived > window, "both streams filled their windows");
  // a third stream still gets through at once
  const sid = p.client.openStream(request(3), true);
  p.flush();
  p.server.sendMessage(sid, { jsonrpc: "2.0", id: 3, result: {} }, true);
  p.flush();
  assert.ok(p.messages(p.clientEvents).some((m) => m.streamId === sid));
  assert.ok(p.client.bufferedReceived <= receiveMemoryBound(p.client.localSettings));
  // reading a stream gives its credit back and the producer goes on
  for (const m of p.messages(p.clientEvents).filter((m) => m.streamId === 1)) p.client.acknowledge(1, m.size);
  p.flush();
  assert.ok(p.messages(p.clientEvents).filter((m) => m.streamId === 1).length > 16);
});

test("CANCEL both ways: the peer learns it, late frames are dropped and credited", () => {
  const p = new Pair();
  const sid = p.client.openStream(request(1), true);
  p.flush();
  p.client.cancelStream(sid, ErrorCode.CANCELLED, "user pressed stop");
  p.flush();
  assert.deepEqual(p.serverEvents.at(-1), { kind: "cancelled", streamId: sid, code: ErrorCode.CANCELLED, reason: "user pressed stop", remote: true });
  const sid2 = p.client.openStream(request(2), true);
  p.flush();
  p.server.cancelStream(sid2, ErrorCode.INTERNAL_ERROR, "handler crashed");
  p.flush();
  assert.deepEqual(p.clientEvents.at(-1), { kind: "cancelled", streamId: sid2, code: ErrorCode.INTERNAL_ERROR, reason: "handler crashed", remote: true });
});

test("PINGs are answered, and a silent peer is declared dead after 2 x interval + 5 s", () => {
  const p = new Pair({ ping_interval: 1 });
  p.flush();
  const opaque = p.client.ping();
  p.flush();
  assert.ok(p.clientEvents.some((e) => e.kind === "pingAck" && e.opaque === opaque));
  // the server stops answering: the client pings after 1 s, gives up after 7 s
  p.now += 1;
  assert.deepEqual(p.client.tick(), []);
  assert.equal(p.client.nextDeadline(), p.now - 1 + 2 + 5);
  p.now += 5.9;
  assert.deepEqual(p.client.tick(), []);
  p.now += 0.2;
  const dead = terminated(p.client.tick());
  assert.equal(dead?.code, ErrorCode.TIMEOUT);
  assert.equal(dead?.closeCode, 1008);
});

test("no HELLO within the timeout is TIMEOUT", () => {
  const p = new Pair();
  p.now += 10;
  assert.equal(terminated(p.client.tick())?.code, ErrorCode.TIMEOUT);
});

test("a graceful GOAWAY refuses streams above its last id and lets the others finish", () => {
  const p = new Pair();
  p.client.openStream(request(1), true);
  p.flush();
  const late = p.client.openStream(request(2), true); // not yet seen by the server
  p.server.close(ErrorCode.NO_ERROR, "deploy");
  for (const m of p.server.dataToSend()) p.clientEvents.push(...p.client.receiveData(m));
  assert.ok(p.clientEvents.some((e) => e.kind === "goaway"));
  assert.ok(p.clientEvents.some((e) => e.kind === "cancelled" && e.streamId === late && e.code === ErrorCode.REFUSED_STREAM));
  assert.equal(p.client.streamSlots, 0);
  assert.throws(() => p.client.openStream(request(3)), /GOAWAY/);
  assert.equal(p.client.isFinished, false); // stream 1 still open
});

test("an error GOAWAY ends the connection with its close code", () => {
  const p = new Pair();
  p.flush();
  p.server.close(ErrorCode.ENHANCE_YOUR_CALM, "é".repeat(300));
  const [message] = p.server.dataToSend();
  const ended = terminated(p.client.receiveData(message!));
  assert.equal(ended?.code, ErrorCode.ENHANCE_YOUR_CALM);
  assert.equal(ended?.closeCode, 1008);
  assert.equal(new TextEncoder().encode(ended!.reason).length, 256); // cut by bytes
});

test("a declared 4 GiB bin in a few bytes fails without allocating", () => {
  const p = new Pair();
  p.flush();
  const before = process.memoryUsage().arrayBuffers;
  const ended = terminated(p.client.receiveData(new Uint8Array([0x94, 0x02, 0x02, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff])));
  assert.equal(ended?.code, ErrorCode.PROTOCOL_ERROR);
  assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20);
});

test("bad frames end the connection with the documented error", () => {
  const cases: [Uint8Array, number][] = [
    [encode([1, 3, 0, new Uint8Array(1)]), ErrorCode.PROTOCOL_ERROR], // OPEN of an odd id: the client opens those
    [encode([4, 0, 0, 0]), ErrorCode.PROTOCOL_ERROR], // CREDIT of 0
    [encode([4, 0, 0, 2 ** 31 - 1]), ErrorCode.FLOW_CONTROL_ERROR], // window overflow
    [encode([2, 9, 0, new Uint8Array(1)]), ErrorCode.PROTOCOL_ERROR], // a stream never opened
    [encode([0, 0, 0, {}]), ErrorCode.PROTOCOL_ERROR], // a second HELLO
  ];
  for (const [bytes, code] of cases) {
    const p = new Pair();
    p.flush();
    assert.equal(terminated(p.client.receiveData(bytes))?.code, code, Buffer.from(bytes).toString("hex"));
    const goaway = decodeMessage(p.client.dataToSend()[0]!, 1 << 24)[0];
    assert.equal(goaway?.type, 6);
  }
});

test("a PING flood is ENHANCE_YOUR_CALM", () => {
  const p = new Pair();
  p.flush();
  const flood = new Uint8Array(Buffer.concat(Array.from({ length: 60 }, (_, i) => Buffer.from(encode([5, 0, 0, i])))));
  assert.equal(terminated(p.client.receiveData(flood))?.code, ErrorCode.ENHANCE_YOUR_CALM);
});

test("a text message is 1003", () => {
  const p = new Pair();
  assert.equal(terminated(p.client.receiveText())?.closeCode, 1003);
});

test("the documented default bound", () => {
  const p = new Pair();
  assert.equal(receiveMemoryBound(p.client.localSettings), 138_412_032);
});
