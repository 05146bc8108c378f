/**
 * `McpWsTransport`: the MCP TypeScript SDK's `Transport` over mcp-ws.
 *
 *     const client = new Client({ name: "app", version: "1.0.0" });
 *     await client.connect(new McpWsTransport("ws://127.0.0.1:8765/mcp"));
 *
 * Routing follows docs/protocol.md section 7: each request of ours opens an odd stream
 * (OPEN+END) and its notifications and response arrive on it; the server's requests
 * arrive on even streams and are answered there; everything else uses stream 0.
 * `notifications/cancelled` and CANCEL map onto each other. A request whose stream is
 * cancelled, refused or lost is answered locally with a JSON-RPC error, so no caller
 * waits forever: -32003 when the peer cancelled or refused it, -32000 when the
 * connection ended. Falls back to JSON text frames when the server picks `mcp`.
 */
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

import {
  BEARER_SUBPROTOCOL_PREFIX,
  COMPAT_SUBPROTOCOL,
  ErrorCode,
  MAX_CLOSE_REASON_BYTES,
  SUBPROTOCOL,
  errorName,
  truncateUtf8,
} from "./constants.js";
import { Connection, type Event, type Limits } from "./connection.js";
import { ConnectionClosedError, HandshakeError, UsageError } from "./errors.js";
import type { Message } from "./frames.js";
import type { Settings } from "./settings.js";

/** JSON-RPC error code of a request the peer cancelled or refused (as in Python). */
export const REQUEST_REFUSED = -32003;
/** JSON-RPC error code of a request lost with its connection (the SDK's ConnectionClosed). */
export const CONNECTION_CLOSED = -32000;
/** The largest message the transport accepts by default: 80 MiB, as the Python binding. */
export const DEFAULT_MAX_MESSAGE_SIZE = 80 * 1024 * 1024;
/** The JSON-RPC method of a partial result (the streaming extension). */
export const PARTIAL_RESULT = "notifications/tools/partial_result";

/** The parts of the WebSocket API this transport uses (the browser's, Node's, or `ws`). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | ArrayBufferLike | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the global one, or the `ws` package's (which takes headers). */
export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

export interface McpWsTransportOptions {
  /** A bearer token: sent as `Authorization` with a `WebSocket` constructor that takes
   * headers (`ws`), and as the `mcp-ws.bearer.<token>` subprotocol with the global one. */
  token?: string;
  /** The WebSocket constructor; defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Our settings (what we allow the server), e.g. `{ ping_interval: 5 }`; messages up to
   * 80 MiB unless `max_message_size` says otherwise. */
  settings?: Partial<Settings>;
  /** Abuse limits and timers (local choices). */
  limits?: Partial<Limits>;
  /** How long the WebSocket handshake may take (default 10 s). */
  connectTimeoutMs?: number;
  /** How long `close` waits for the server's close frame (default 5 s). */
  closeTimeoutMs?: number;
  /** Extra HTTP headers, where the constructor takes them (`ws`). */
  headers?: Record<string, string>;
  /** The subprotocols to offer, in order of preference (default `mcp-ws.v1`, then `mcp`). */
  subprotocols?: string[];
  /** Where `token` goes: `"header"` or `"subprotocol"`. Default: a header when a
   * `WebSocket` constructor is passed (as `ws` takes headers), else the subprotocol. */
  tokenIn?: "header" | "subprotocol";
}

/** A streaming call reading its stream directly (see `streamTool`). */
export interface DirectSubscriber {
  /** mcp-ws carries the call: `ack(size)` returns stream credit once an event is taken. */
  attach(ack: (size: number) => void): void;
  /** One partial result's params and its size on the wire (never blocks). */
  deliver(params: unknown, size: number): void;
}

type RequestId = string | number;

function isRequestId(value: unknown): value is RequestId {
  return typeof value === "string" || typeof value === "number";
}

/** The SDK's `Transport` over mcp-ws (see the module comment). */
export class McpWsTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;

  /** The subprotocol the server chose: `mcp-ws.v1`, or `mcp` (JSON text). */
  subprotocol: string | undefined;
  /** The sans-I/O core (`undefined` in JSON-text mode or before `start`). */
  core: Connection | undefined;
  /** Why the connection ended, once it has. */
  termination: Extract<Event, { kind: "terminated" }> | undefined;

  private ws: WebSocketLike | undefined;
  private readonly own = new Map<RequestId, number>();
  private readonly ownSid = new Map<number, RequestId>();
  private readonly peer = new Map<RequestId, number>();
  private readonly peerSid = new Map<number, RequestId>();
  private readonly direct = new Map<number, DirectSubscriber>();
  private readonly subscribers = new Map<string | number, DirectSubscriber>();
  private readonly slotWaiters: (() => void)[] = [];
  private readonly inbox: ({ message: unknown; sid: number; size: number } | "close")[] = [];
  private inboxScheduled = false;
  private flushScheduled = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedAt = Infinity;
  private closedResolve: (() => void) | undefined;
  private readonly closedPromise: Promise<void>;
  private ended = false;

  constructor(
    readonly url: string,
    readonly options: McpWsTransportOptions = {},
  ) {
    this.closedPromise = new Promise((resolve) => (this.closedResolve = resolve));
  }

  /** Open the WebSocket; resolves once it is open (the SDK then sends `initialize`). */
  async start(): Promise<void> {
    if (this.ws) throw new UsageError("McpWsTransport already started");
    const Ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new UsageError("no WebSocket here: pass one, e.g. `new McpWsTransport(url, { WebSocket })` from the ws package");
    }
    const protocols = [...(this.options.subprotocols ?? [SUBPROTOCOL, COMPAT_SUBPROTOCOL])];
    const headers: Record<string, string> = { ...this.options.headers };
    const token = this.options.token;
    if (token !== undefined) {
      const inHeader = (this.options.tokenIn ?? (this.options.WebSocket ? "header" : "subprotocol")) === "header";
      if (inHeader) headers["Authorization"] = `Bearer ${token}`;
      else protocols.push(BEARER_SUBPROTOCOL_PREFIX + token);
    }
    const ws = Object.keys(headers).length ? new Ctor(this.url, protocols, { headers }) : new Ctor(this.url, protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => {
        ws.onopen = ws.onerror = ws.onclose = null;
        ws.close();
        reject(new HandshakeError(`no WebSocket handshake with ${this.url} within ${this.connectTimeout} ms`));
      }, this.connectTimeout);
      ws.onopen = () => {
        clearTimeout(timeout);
        // Everything is wired here, synchronously: the `ws` package may deliver the
        // server's first message (its HELLO) in the same tick as the open event.
        this.opened(ws);
        resolve();
      };
      ws.onerror = (event) => {
        clearTimeout(timeout);
        ws.onopen = ws.onerror = ws.onclose = null;
        const detail = (event as { message?: string }).message ?? "the server refused or could not be reached";
        reject(new HandshakeError(`WebSocket handshake with ${this.url} failed: ${detail}`));
      };
      ws.onclose = (event) => {
        clearTimeout(timeout);
        reject(new HandshakeError(`the WebSocket closed during the handshake (${event.code})`));
      };
    });
    if (ws.protocol !== SUBPROTOCOL && ws.protocol !== COMPAT_SUBPROTOCOL) {
      ws.close(1002, "no subprotocol");
      throw new HandshakeError(`the server chose subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`);
    }
  }

  /** The WebSocket is open: route its messages by the subprotocol the server chose. */
  private opened(ws: WebSocketLike): void {
    this.subprotocol = ws.protocol;
    ws.onclose = (event) => this.onSocketClosed(event.code, event.reason);
    ws.onerror = (event) => this.onerror?.(new Error((event as { message?: string }).message ?? "WebSocket error"));
    if (ws.protocol === COMPAT_SUBPROTOCOL) {
      ws.onmessage = (event) => this.onJsonText(event.data);
      return;
    }
    if (ws.protocol !== SUBPROTOCOL) return; // start() refuses it
    const settings = { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, ...this.options.settings };
    this.core = new Connection("client", settings, { limits: this.options.limits ?? {} });
    ws.onmessage = (event) => this.onSocketMessage(event.data);
    this.flush(); // our HELLO
    this.arm();
  }

  /** Route one message from the SDK. */
  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const ws = this.ws;
    if (!ws || this.ended) throw new ConnectionClosedError(this.closedText(), this.termination?.code ?? ErrorCode.NO_ERROR);
    if (!this.core) {
      ws.send(JSON.stringify(message));
      return;
    }
    const m = message as unknown as Message;
    if ("method" in m && "id" in m && isRequestId(m["id"])) await this.sendRequest(m, m["id"]);
    else if ("method" in m) this.sendNotification(m, options?.relatedRequestId);
    else this.sendResponse(m);
    this.scheduleFlush();
  }

  /** Leave: cancel what is in flight, GOAWAY, close the WebSocket (waits at most the
   * close timeout for the server's close frame). */
  async close(): Promise<void> {
    const ws = this.ws;
    if (!ws || this.ended) return;
    const core = this.core;
    if (core && !core.closed) {
      for (const sid of [...this.ownSid.keys(), ...this.peerSid.keys()]) {
        core.cancelStream(sid, ErrorCode.CANCELLED, "the client is leaving");
      }
      core.close(ErrorCode.NO_ERROR, "the client is leaving");
      this.flush();
    } else if (!core) {
      ws.close(1000);
    }
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, this.options.closeTimeoutMs ?? 5000));
    await Promise.race([this.closedPromise, timeout]);
    if (!this.ended) this.onSocketClosed(1006, "the close timed out");
  }

  // ------------------------------------------------------------------ for streamTool

  /** Route partial results of the call carrying `token` straight to `subscriber`. */
  subscribe(token: string | number, subscriber: DirectSubscriber): void {
    this.subscribers.set(token, subscriber);
  }

  /** Stop routing `token`. */
  unsubscribe(token: string | number): void {
    this.subscribers.delete(token);
  }

  // ------------------------------------------------------------------ SDK -> wire

  private async sendRequest(message: Message, id: RequestId): Promise<void> {
    const core = this.core!;
    while (!core.closed && core.state === "open" && core.streamSlots === 0) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve)); // FIFO
    }
    if (core.closed) throw new ConnectionClosedError(this.closedText(), core.errorCode ?? ErrorCode.NO_ERROR, core.closeCode);
    let sid: number;
    try {
      sid = core.openStream(message, true);
    } catch (error) {
      this.answerLocally(id, REQUEST_REFUSED, `request not sent: ${(error as Error).message}`);
      return;
    }
    this.own.set(id, sid);
    this.ownSid.set(sid, id);
    const params = message["params"] as { _meta?: { partialResultToken?: unknown } } | undefined;
    const token = params?._meta?.partialResultToken;
    const subscriber = isRequestId(token) ? this.subscribers.get(token) : undefined;
    if (message["method"] === "tools/call" && subscriber) {
      this.direct.set(sid, subscriber);
      subscriber.attach((size) => this.acknowledge(sid, size));
    }
  }

  private sendNotification(message: Message, related: RequestId | undefined): void {
    const core = this.core!;
    const params = message["params"] as { requestId?: unknown; reason?: unknown } | undefined;
    if (message["method"] === "notifications/cancelled" && isRequestId(params?.requestId)) {
      const sid = this.own.get(params.requestId);
      if (sid !== undefined) {
        this.forgetOwn(sid);
        core.cancelStream(sid, ErrorCode.CANCELLED, String(params.reason ?? ""));
        return;
      }
    }
    const sid = related !== undefined ? (this.peer.get(related) ?? 0) : 0;
    try {
      core.sendMessage(sid, message);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error; // that stream is gone: drop it
    }
  }

  private sendResponse(message: Message): void {
    const id = message["id"];
    const sid = isRequestId(id) ? this.peer.get(id) : undefined;
    if (sid === undefined) return; // the request is gone (cancelled)
    this.peer.delete(id as RequestId);
    this.peerSid.delete(sid);
    try {
      this.core!.sendMessage(sid, message, true);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
    }
  }

  // ------------------------------------------------------------------ wire -> SDK

  private onSocketMessage(data: unknown): void {
    const core = this.core!;
    const events =
      typeof data === "string"
        ? core.receiveText()
        : core.receiveData(data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer));
    this.onEvents(events);
    if (core.hasDataToSend || core.isFinished) this.scheduleFlush();
    this.arm();
  }

  private onEvents(events: Event[]): void {
    for (const event of events) {
      switch (event.kind) {
        case "message":
          this.received(event.streamId, event.message, event.size);
          break;
        case "cancelled":
          this.cancelled(event.streamId, event.code, event.reason, event.remote);
          break;
        case "ended":
          this.endedWithoutAnswer(event.streamId);
          break;
        case "terminated":
          this.terminated(event);
          break;
        case "invalid":
          this.onerror?.(new Error(`dropped a message on stream ${event.streamId}: ${event.reason}`));
          break;
        default:
          break;
      }
    }
    this.wakeSlotWaiters();
  }

  private received(sid: number, message: Message, size: number): void {
    const subscriber = this.direct.get(sid);
    if (subscriber && message["method"] === PARTIAL_RESULT) {
      subscriber.deliver(jsonSafe(message["params"]), size); // credit when the caller takes it
      return;
    }
    const id = message["id"];
    if ("method" in message && isRequestId(id) && sid && !this.ownSid.has(sid)) {
      this.peer.set(id, sid);
      this.peerSid.set(sid, id);
    } else if (!("method" in message) && isRequestId(id) && this.own.get(id) === sid) {
      this.forgetOwn(sid);
    }
    this.toSdk(jsonSafe(message), sid, size);
  }

  /**
   * Hand a message to the SDK, one per microtask: the SDK runs notification handlers a
   * microtask after `onmessage` but settles responses at once, so a response must not
   * overtake the notifications (progress) that arrived before it in the same WebSocket
   * message. Its credit goes back once the SDK has it.
   */
  private toSdk(message: unknown, sid = 0, size = 0): void {
    this.inbox.push({ message, sid, size });
    this.scheduleInbox();
  }

  private scheduleInbox(): void {
    if (this.inboxScheduled || !this.inbox.length) return;
    this.inboxScheduled = true;
    queueMicrotask(() => {
      this.inboxScheduled = false;
      const item = this.inbox.shift();
      if (item === "close") {
        this.inbox.length = 0;
        this.onclose?.();
        return;
      }
      if (item) {
        try {
          this.onmessage?.(item.message as JSONRPCMessage);
        } finally {
          this.acknowledge(item.sid, item.size);
        }
      }
      this.scheduleInbox();
    });
  }

  private cancelled(sid: number, code: ErrorCode, reason: string, remote: boolean): void {
    const id = this.ownSid.get(sid);
    if (id !== undefined) {
      this.forgetOwn(sid);
      const who = remote ? "the peer" : "mcp-ws";
      this.answerLocally(id, REQUEST_REFUSED, `request cancelled by ${who} (${errorName(code)})${reason ? `: ${reason}` : ""}`);
      return;
    }
    const peerId = this.peerSid.get(sid);
    if (peerId !== undefined) {
      this.peer.delete(peerId);
      this.peerSid.delete(sid);
      const params: Record<string, unknown> = { requestId: peerId };
      if (reason) params["reason"] = reason;
      this.toSdk({ jsonrpc: "2.0", method: "notifications/cancelled", params });
    }
  }

  private endedWithoutAnswer(sid: number): void {
    const id = this.ownSid.get(sid);
    if (id === undefined) return;
    this.forgetOwn(sid);
    this.answerLocally(id, REQUEST_REFUSED, "the peer ended the request without answering");
  }

  private terminated(event: Extract<Event, { kind: "terminated" }>): void {
    this.termination = event;
    const text = this.closedText();
    for (const id of [...this.own.keys()]) this.answerLocally(id, CONNECTION_CLOSED, text);
    this.own.clear();
    this.ownSid.clear();
    this.peer.clear();
    this.peerSid.clear();
    this.direct.clear();
    this.scheduleFlush(); // the GOAWAY, then the close
  }

  private answerLocally(id: RequestId, code: number, message: string): void {
    this.toSdk({ jsonrpc: "2.0", id, error: { code, message } });
  }

  private forgetOwn(sid: number): void {
    const id = this.ownSid.get(sid);
    this.ownSid.delete(sid);
    this.direct.delete(sid);
    if (id !== undefined) this.own.delete(id);
  }

  private acknowledge(sid: number, size: number): void {
    const core = this.core;
    if (!core || !size) return;
    if (core.acknowledge(sid, size)) this.scheduleFlush();
    if (this.slotWaiters.length) this.wakeSlotWaiters(); // a stream read to its end frees its slot
  }

  private wakeSlotWaiters(): void {
    const core = this.core;
    if (!this.slotWaiters.length || !core) return;
    let free = core.closed || core.state !== "open" ? this.slotWaiters.length : core.streamSlots;
    while (free-- > 0 && this.slotWaiters.length) this.slotWaiters.shift()!();
  }

  private onJsonText(data: unknown): void {
    if (typeof data !== "string") {
      this.onerror?.(new Error("binary message in JSON-text mode: ignored"));
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this.onerror?.(error as Error);
      return;
    }
    this.toSdk(message);
  }

  // ------------------------------------------------------------------ I/O

  private get connectTimeout(): number {
    return this.options.connectTimeoutMs ?? 10000;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Send what the core has queued; close the WebSocket once the core is finished. */
  private flush(): void {
    const core = this.core;
    const ws = this.ws;
    if (!core || !ws || this.ended || ws.readyState !== 1) return;
    for (const message of core.dataToSend()) ws.send(message);
    if (core.isFinished) {
      const reason = truncateUtf8(this.termination?.reason ?? "", MAX_CLOSE_REASON_BYTES);
      ws.close(core.closeCode ?? 1000, reason);
    }
  }

  /** Run the core's timers at its next deadline (HELLO timeout, keepalive, dead peer). */
  private arm(): void {
    const core = this.core;
    const deadline = core?.nextDeadline();
    if (!core || deadline === undefined || this.ended) return;
    if (this.timer !== undefined && deadline >= this.armedAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = deadline;
    const delay = Math.max((deadline - performance.now() / 1000) * 1000, 0);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedAt = Infinity;
      this.onEvents(core.tick());
      this.flush();
      if (core.closed && this.termination?.code === ErrorCode.TIMEOUT) this.onSocketClosed(1006, "dead peer");
      else this.arm();
    }, delay);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private onSocketClosed(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const core = this.core;
    if (core && !core.closed) {
      this.onEvents(core.connectionLost(`the connection was lost (WebSocket ${code})${reason ? `: ${reason}` : ""}`));
    }
    for (const waiter of this.slotWaiters.splice(0)) waiter();
    const ws = this.ws;
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState < 2) ws.close(1000);
    }
    this.closedResolve?.();
    this.inbox.push("close"); // after what is still on its way to the SDK
    this.scheduleInbox();
  }

  private closedText(): string {
    const t = this.termination;
    if (!t) return "the connection is closed";
    const who = t.remote ? "the peer" : "we";
    return `connection closed (${errorName(t.code)} from ${who}, WebSocket ${t.closeCode})${t.reason ? `: ${t.reason}` : ""}`;
  }
}

/** `value` with every byte array (MessagePack `bin`) as base64 text, as JSON has it. */
export function jsonSafe(value: unknown): unknown {
  if (value instanceof Uint8Array) return toBase64(value);
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    value.forEach((item, i) => {
      const safe = jsonSafe(item);
      if (safe !== item) (copy ??= [...value])[i] = safe;
    });
    return copy ?? value;
  }
  if (value !== null && typeof value === "object") {
    let copy: Record<string, unknown> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const safe = jsonSafe(item);
      if (safe !== item) (copy ??= { ...(value as Record<string, unknown>) })[key] = safe;
    }
    return copy ?? value;
  }
  return value;
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
