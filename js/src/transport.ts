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
 *
 * Handover (on by default, `handover: false` to turn it off), as in the Python client:
 * when the server sends a graceful GOAWAY, a fresh connection to the same URL is made at
 * once and new requests go out on it while the calls in flight finish on the old one
 * (`onconnectionlost` tells when none could be made); a request the server
 * refused unprocessed is sent again; in the 2025-11-25 era the new connection first
 * replays `initialize`, `notifications/initialized`, the last `logging/setLevel` and the
 * resource subscriptions. After a connection is lost without GOAWAY its calls fail with
 * -32000 (`onconnectionlost` tells) and the next request connects again, with jittered
 * exponential backoff between failed attempts.
 *
 * Resume (on by default with handover, `resume: false` to turn it off; docs/protocol.md
 * section 9), as in the Python client: when the server agreed to resume, a link that
 * drops without a closing handshake (or a server gone silent) is not the end of the
 * connection. The same connection carries on over a new WebSocket, dialled at once and
 * then with jittered backoff until the server's grace period runs out; nothing is lost
 * or repeated and the SDK sees nothing. `onlinkstate` says "recovering", "recovered" or
 * "lost"; when the resume fails, calls in flight fail with -32004 (`OUTCOME_UNKNOWN`).
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

/** JSON-RPC error code of a request in flight on a connection that agreed to resume and
 * could not: it may or may not have run, and it is not sent again (as in Python). */
export const OUTCOME_UNKNOWN = -32004;
/** The URL query parameter a resume carries: the server's name for itself (a load
 * balancer routes on it: README, nginx). */
export const NODE_PARAMETER = "mcp_ws_node";
/** The URL query parameter naming the worker process behind that server. */
export const WORKER_PARAMETER = "mcp_ws_worker";
/** How long a resume waits for the server's answer before it tries a new link (ms). */
export const RESUME_ANSWER_TIMEOUT_MS = 10000;
/** What `onlinkstate` is told about a connection that can resume. */
export type LinkState = "recovering" | "recovered" | "lost";

/** JSON-RPC error code of a request the peer cancelled or refused (as in Python). */
export const REQUEST_REFUSED = -32003;
/** JSON-RPC error code of a request lost with its connection (the SDK's ConnectionClosed). */
export const CONNECTION_CLOSED = -32000;
/** The largest message the transport accepts by default: 80 MiB, as the Python binding. */
export const DEFAULT_MAX_MESSAGE_SIZE = 80 * 1024 * 1024;
/** The JSON-RPC method of a partial result (the streaming extension). */
export const PARTIAL_RESULT = "notifications/tools/partial_result";

/** The extension method that reads a streamed call again by its handle (`attachStream`). */
export const ATTACH = "io.github.mcp-ws/attach";

/** The extension method that cancels a streamed call by its handle. */
export const CANCEL = "io.github.mcp-ws/cancel";

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
  /** Move to a new connection when the server goes away, and reconnect after a lost
   * one (default `true`; see the module comment). */
  handover?: boolean;
  /** Resume a dropped link when the server offers it (default `true`, with handover;
   * docs/protocol.md section 9). */
  resume?: boolean;
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

/** Attempts one request makes to reach the server before it fails (as in Python). */
export const RECONNECT_ATTEMPTS = 5;
const RECONNECT_DELAY_MS = 100;
/** The longest wait between two attempts. A connection that ends (or is sent away)
 * sooner than this after it opened counts as a failed attempt, one that lasted resets
 * the backoff: a server that sends every connection away at once is not spun against. */
const RECONNECT_DELAY_MAX_MS = 2000;
/** Times one refused request is sent again before it fails with REQUEST_REFUSED. */
export const RESEND_LIMIT = RECONNECT_ATTEMPTS;
const RESENDS_KEPT = 1024; // request ids whose resends are counted at once

type Terminated = Extract<Event, { kind: "terminated" }>;

/** What a `Link` needs from the transport that owns it. */
interface LinkHost {
  /** Hand a message to the SDK; taking it returns `size` bytes of credit on `link`. */
  toSdk(message: unknown, link?: Link, sid?: number, size?: number): void;
  readonly subscribers: Map<string | number, DirectSubscriber>;
  onerror?: (error: Error) => void;
  /** The server sent a graceful GOAWAY on `link`. */
  goingAway(link: Link): void;
  /** A request of ours the server refused unprocessed (safe to send elsewhere), or
   * `undefined` when such requests are answered with an error instead. */
  readonly retry: ((message: Message) => void) | undefined;
  /** `link`'s WebSocket is gone. */
  linkClosed(link: Link): void;
  /** A new WebSocket (`mcp-ws.v1`) to the server named `node`, for a resume; absent
   * when resume is off. */
  readonly resumeDial: ((node: string | undefined, worker: string | undefined) => Promise<WebSocketLike>) | undefined;
  /** Tell the application about a resume. */
  linkState(state: LinkState): void;
}

/**
 * One mcp-ws connection: a WebSocket, its sans-I/O core, and the requests it carries.
 * The transport keeps one, or (across a handover) an old one finishing its calls and a
 * new one taking the new requests.
 */
class Link {
  readonly core: Connection;
  termination: Terminated | undefined;
  ended = false;
  /** How many times the connection resumed over a new WebSocket. */
  resumes = 0;
  ws: WebSocketLike;
  private relinking: ((outcome: "resumed" | "closed" | "over") => void) | undefined;
  private givingUp = false;
  /** When it opened (ms), until the transport counted how long it lasted. */
  openedAt: number | undefined = performance.now();
  readonly closed: Promise<void>;

  private readonly own = new Map<RequestId, number>();
  private readonly ownSid = new Map<number, RequestId>();
  private readonly ownMessage = new Map<number, Message>(); // kept to resend, when refused
  private readonly peer = new Map<RequestId, number>();
  private readonly peerSid = new Map<number, RequestId>();
  private readonly direct = new Map<number, DirectSubscriber>();
  private readonly replies = new Map<RequestId, (answer: Message) => void>();
  private readonly slotWaiters: (() => void)[] = [];
  private flushScheduled = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedAt = Infinity;
  private closedResolve: (() => void) | undefined;

  constructor(
    private readonly host: LinkHost,
    ws: WebSocketLike,
    options: McpWsTransportOptions,
  ) {
    this.closed = new Promise((resolve) => (this.closedResolve = resolve));
    const settings = { max_message_size: DEFAULT_MAX_MESSAGE_SIZE, ...options.settings };
    const resume = host.resumeDial ? { resume: {} } : {};
    this.core = new Connection("client", settings, { limits: options.limits ?? {}, ...resume });
    this.ws = ws;
    this.wire(ws);
    this.flush(); // our HELLO
    this.arm();
  }

  private wire(ws: WebSocketLike): void {
    ws.onclose = (event) => this.onSocketClosed(event.code, event.reason);
    ws.onerror = (event) => this.host.onerror?.(new Error((event as { message?: string }).message ?? "WebSocket error"));
    ws.onmessage = (event) => this.onSocketMessage(event.data);
  }

  /** Whether new requests may go on this connection. */
  get usable(): boolean {
    return !this.ended && !this.core.closed && this.core.state === "open";
  }

  ownsRequest(id: RequestId): boolean {
    return this.own.has(id);
  }

  ownsPeerRequest(id: RequestId): boolean {
    return this.peer.has(id);
  }

  // ------------------------------------------------------------------ SDK -> wire

  async sendRequest(message: Message, id: RequestId): Promise<void> {
    const core = this.core;
    while (!core.closed && core.state === "open" && core.streamSlots === 0) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve)); // FIFO
    }
    if (core.closed) throw new ConnectionClosedError(this.closedText(), core.errorCode ?? ErrorCode.NO_ERROR, core.closeCode);
    let sid: number;
    try {
      sid = core.openStream(message, true);
    } catch (error) {
      const retry = this.host.retry;
      if (retry && core.state !== "open") retry(message); // the GOAWAY came first: not sent
      else this.answerLocally(id, REQUEST_REFUSED, `request not sent: ${(error as Error).message}`);
      return;
    }
    this.own.set(id, sid);
    this.ownSid.set(sid, id);
    if (this.host.retry) this.ownMessage.set(sid, message);
    const params = message["params"] as { _meta?: { partialResultToken?: unknown } } | undefined;
    const token = params?._meta?.partialResultToken;
    const subscriber = isRequestId(token) ? this.host.subscribers.get(token) : undefined;
    const method = message["method"];
    if ((method === "tools/call" || method === ATTACH) && subscriber) {
      this.direct.set(sid, subscriber);
      subscriber.attach((size) => this.acknowledge(sid, size));
    }
    this.scheduleFlush();
  }

  /** Send `request` and resolve with its answer, which the SDK never sees (a replay). */
  async ask(request: Message, id: RequestId): Promise<Message> {
    const answer = new Promise<Message>((resolve) => this.replies.set(id, resolve));
    await this.sendRequest(request, id);
    return answer;
  }

  /** Cancel our request `id` (the SDK's `notifications/cancelled`). */
  cancelRequest(id: RequestId, reason: string): void {
    const sid = this.own.get(id);
    if (sid === undefined) return;
    this.forgetOwn(sid);
    this.core.cancelStream(sid, ErrorCode.CANCELLED, reason);
    this.scheduleFlush();
  }

  sendNotification(message: Message, related: RequestId | undefined): void {
    const sid = related !== undefined ? (this.peer.get(related) ?? 0) : 0;
    try {
      this.core.sendMessage(sid, message);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error; // that stream is gone: drop it
    }
    this.scheduleFlush();
  }

  sendResponse(message: Message): void {
    const id = message["id"];
    const sid = isRequestId(id) ? this.peer.get(id) : undefined;
    if (sid === undefined) return; // the request is gone (cancelled)
    this.peer.delete(id as RequestId);
    this.peerSid.delete(sid);
    try {
      this.core.sendMessage(sid, message, true);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
    }
    this.scheduleFlush();
  }

  /** Leave: cancel what is in flight, GOAWAY; the WebSocket closes when the core is done. */
  leave(): void {
    const core = this.core;
    if (this.ended || core.closed) return;
    if (core.suspended) {
      this.givingUp = true; // no link to say goodbye on: the resume ends here
      this.relinking?.("over");
      return;
    }
    for (const sid of [...this.ownSid.keys(), ...this.peerSid.keys()]) {
      core.cancelStream(sid, ErrorCode.CANCELLED, "the client is leaving");
    }
    core.close(ErrorCode.NO_ERROR, "the client is leaving");
    this.flush();
  }

  // ------------------------------------------------------------------ wire -> SDK

  private onSocketMessage(data: unknown): void {
    const core = this.core;
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
        case "goaway":
          this.host.goingAway(this);
          break;
        case "terminated":
          this.terminated(event);
          this.relinking?.("over");
          break;
        case "resumed":
          this.resumes += 1;
          this.relinking?.("resumed");
          this.host.linkState("recovered");
          break;
        case "invalid":
          this.host.onerror?.(new Error(`dropped a message on stream ${event.streamId}: ${event.reason}`));
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
      const reply = this.replies.get(id);
      if (reply) {
        this.replies.delete(id);
        this.acknowledge(sid, size);
        reply(message);
        return;
      }
    }
    this.host.toSdk(jsonSafe(message), this, sid, size);
  }

  private cancelled(sid: number, code: ErrorCode, reason: string, remote: boolean): void {
    const id = this.ownSid.get(sid);
    if (id !== undefined) {
      const message = this.ownMessage.get(sid);
      this.forgetOwn(sid);
      const retry = this.host.retry;
      if (remote && code === ErrorCode.REFUSED_STREAM && retry && message && !this.replies.has(id)) {
        retry(message); // never processed: safe to send again on another connection
        return;
      }
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
      this.host.toSdk({ jsonrpc: "2.0", method: "notifications/cancelled", params });
    }
  }

  private endedWithoutAnswer(sid: number): void {
    const id = this.ownSid.get(sid);
    if (id === undefined) return;
    this.forgetOwn(sid);
    this.answerLocally(id, REQUEST_REFUSED, "the peer ended the request without answering");
  }

  private terminated(event: Terminated): void {
    this.termination = event;
    const [code, text] = event.sessionLost
      ? [OUTCOME_UNKNOWN, `outcome unknown: ${event.reason}`]
      : [CONNECTION_CLOSED, this.closedText()];
    if (event.sessionLost) this.host.linkState("lost");
    for (const id of [...this.own.keys()]) this.answerLocally(id, code, text);
    this.own.clear();
    this.ownSid.clear();
    this.ownMessage.clear();
    this.peer.clear();
    this.peerSid.clear();
    this.direct.clear();
    this.scheduleFlush(); // the GOAWAY, then the close
  }

  private answerLocally(id: RequestId, code: number, message: string): void {
    const answer = { jsonrpc: "2.0", id, error: { code, message } };
    const reply = this.replies.get(id);
    if (reply) {
      this.replies.delete(id);
      reply(answer as unknown as Message);
      return;
    }
    this.host.toSdk(answer);
  }

  private forgetOwn(sid: number): void {
    const id = this.ownSid.get(sid);
    this.ownSid.delete(sid);
    this.ownMessage.delete(sid);
    this.direct.delete(sid);
    if (id !== undefined) this.own.delete(id);
  }

  acknowledge(sid: number, size: number): void {
    if (!size || this.ended) return;
    if (this.core.acknowledge(sid, size)) this.scheduleFlush();
    if (this.slotWaiters.length) this.wakeSlotWaiters(); // a stream read to its end frees its slot
  }

  private wakeSlotWaiters(): void {
    const core = this.core;
    if (!this.slotWaiters.length) return;
    let free = core.closed || core.state !== "open" ? this.slotWaiters.length : core.streamSlots;
    while (free-- > 0 && this.slotWaiters.length) this.slotWaiters.shift()!();
  }

  // ------------------------------------------------------------------ I/O

  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Send what the core has queued; close the WebSocket once the core is finished. */
  flush(): void {
    const ws = this.ws;
    if (this.ended || ws.readyState !== 1) return;
    const core = this.core;
    for (const message of core.dataToSend()) ws.send(message);
    if (core.isFinished) {
      const reason = truncateUtf8(this.termination?.reason ?? "", MAX_CLOSE_REASON_BYTES);
      ws.close(core.closeCode ?? 1000, reason);
    }
  }

  /** Run the core's timers at its next deadline (HELLO timeout, keepalive, dead peer). */
  private arm(): void {
    const core = this.core;
    const deadline = core.nextDeadline();
    if (deadline === undefined || this.ended) return;
    if (this.timer !== undefined && deadline >= this.armedAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = deadline;
    const delay = Math.max((deadline - performance.now() / 1000) * 1000, 0);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedAt = Infinity;
      this.onEvents(core.tick());
      this.flush();
      if (core.suspended) this.linkDropped(); // a silent server: resume on a new link
      else if (core.closed && this.termination?.code === ErrorCode.TIMEOUT) this.onSocketClosed(1006, "dead peer");
      else this.arm();
    }, delay);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** The WebSocket is gone (closed, lost, or given up on). */
  onSocketClosed(code: number, reason: string): void {
    if (this.ended) return;
    if (this.relinking) {
      this.relinking("closed"); // this attempt's WebSocket is gone: the next one
      return;
    }
    const core = this.core;
    if (code === 1006 && this.host.resumeDial && core.resumable && !core.isFinished && !this.givingUp) {
      core.suspend();
      this.linkDropped();
      return;
    }
    this.end(code, reason);
  }

  /** The link dropped (the core is suspended): resume over new ones until the grace
   * period runs out, or end. */
  private linkDropped(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
    this.drop(this.ws);
    this.host.linkState("recovering");
    void this.relink();
  }

  private drop(ws: WebSocketLike): void {
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {}; // a late error of a dropped socket has nobody to tell
    if (ws.readyState < 2) ws.close(1000);
  }

  private async relink(): Promise<void> {
    const core = this.core;
    const dial = this.host.resumeDial!;
    const deadline = performance.now() + (core.resumeGrace ?? 0) * 1000;
    let failures = 0;
    while (!this.givingUp && core.suspended && performance.now() < deadline) {
      let ws: WebSocketLike;
      try {
        ws = await dial(core.resumeNode, core.resumeWorker);
      } catch {
        failures += 1;
        const delay = Math.min(RECONNECT_DELAY_MS * 2 ** (failures - 1), RECONNECT_DELAY_MAX_MS) * (0.5 + Math.random());
        await new Promise((resolve) => setTimeout(resolve, Math.min(delay, Math.max(deadline - performance.now(), 0))));
        continue;
      }
      if (this.givingUp) {
        this.drop(ws);
        break;
      }
      const outcome = await new Promise<"resumed" | "closed" | "over">((resolve) => {
        const timer = setTimeout(() => resolve("closed"), RESUME_ANSWER_TIMEOUT_MS);
        this.relinking = (result) => {
          clearTimeout(timer);
          resolve(result);
        };
        this.ws = ws;
        this.wire(ws);
        core.beginResume();
        this.flush(); // the resume HELLO
      });
      this.relinking = undefined;
      if (outcome === "resumed") {
        this.flush(); // what the server missed, and what was queued meanwhile
        this.arm();
        return;
      }
      if (outcome === "over" || core.closed) break;
      this.drop(ws); // closed, or no answer in time: try a new link
    }
    if (!core.closed) this.onEvents(core.connectionLost("no resume within the grace period"));
    this.end(1006, "no resume");
  }

  /** The connection is over: release everything and tell the transport. */
  private end(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const core = this.core;
    if (!core.closed) {
      this.onEvents(core.connectionLost(`the connection was lost (WebSocket ${code})${reason ? `: ${reason}` : ""}`));
    }
    for (const waiter of this.slotWaiters.splice(0)) waiter();
    const ws = this.ws;
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState < 2) ws.close(1000);
    this.closedResolve?.();
    this.host.linkClosed(this);
  }

  closedText(): string {
    const t = this.termination;
    if (!t) return "the connection is closed";
    const who = t.remote ? "the peer" : "we";
    return `connection closed (${errorName(t.code)} from ${who}, WebSocket ${t.closeCode})${t.reason ? `: ${t.reason}` : ""}`;
  }
}

/** The SDK's `Transport` over mcp-ws (see the module comment). */
export class McpWsTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T) => void;
  /** With handover: the connection new requests went to was lost without GOAWAY (its
   * calls in flight failed with -32000; the next request connects again), or the server
   * went away and no new connection could be made. (Without handover the transport
   * closes instead: `onclose`.) */
  onconnectionlost?: (error: Error) => void;
  /** Resume (docs/protocol.md section 9): the link dropped and the connection is being
   * resumed ("recovering"), it was ("recovered"), or it could not be ("lost": the calls
   * in flight failed with -32004, and the next request makes a new connection). */
  onlinkstate?: (state: LinkState) => void;

  /** The subprotocol the server chose: `mcp-ws.v1`, or `mcp` (JSON text). */
  subprotocol: string | undefined;
  /** Connections opened so far (the first included). */
  connections = 0;

  /** @internal Partial-result routes by token (see `subscribe`). */
  readonly subscribers = new Map<string | number, DirectSubscriber>();
  /** @internal */
  readonly retry: ((message: Message) => void) | undefined;
  /** @internal */
  readonly resumeDial: ((node: string | undefined, worker: string | undefined) => Promise<WebSocketLike>) | undefined;

  private started = false;
  private jsonText: WebSocketLike | undefined; // the WebSocket in JSON-text mode
  private current: Link | undefined; // where new requests go
  private last: Link | undefined; // the newest connection, for `core` and `termination`
  private readonly links = new Set<Link>();
  private readonly inbox: ({ message: unknown; link: Link | undefined; sid: number; size: number } | "close")[] = [];
  private inboxScheduled = false;
  private closing = false;
  private ended = false;
  private failures = 0;
  private readonly resends = new Map<RequestId, number>();
  private connecting: Promise<Link> | undefined;
  private replays = 0;
  // What a new connection replays (2025-11-25 era).
  private initialize: Message | undefined;
  private initialized: Message | undefined;
  private logLevel: Message | undefined;
  private readonly subscriptions = new Map<string, Message>();

  constructor(
    readonly url: string,
    readonly options: McpWsTransportOptions = {},
  ) {
    if (options.handover ?? true) this.retry = (message) => void this.resend(message);
    if ((options.handover ?? true) && (options.resume ?? true)) {
      this.resumeDial = async (node, worker) => (await this.dial([SUBPROTOCOL], { node, worker, bare: true })).ws;
    }
  }

  /** @internal */
  linkState(state: LinkState): void {
    this.onlinkstate?.(state);
  }

  /** The sans-I/O core of the newest connection (`undefined` in JSON-text mode or
   * before `start`). */
  get core(): Connection | undefined {
    return this.last?.core;
  }

  /** Why the newest connection ended, once it has. */
  get termination(): Terminated | undefined {
    return this.last?.termination;
  }

  /** Open the WebSocket; resolves once it is open (the SDK then sends `initialize`). */
  async start(): Promise<void> {
    if (this.started) throw new UsageError("McpWsTransport already started");
    this.started = true;
    const { ws, link } = await this.dial(this.options.subprotocols ?? [SUBPROTOCOL, COMPAT_SUBPROTOCOL]);
    this.subprotocol = ws.protocol;
    this.current = link;
    if (link && !link.usable) this.goingAway(link); // sent away before start() returned
    if (ws.protocol === COMPAT_SUBPROTOCOL) {
      this.jsonText = ws;
      ws.onclose = () => this.finish();
      ws.onerror = (event) => this.onerror?.(new Error((event as { message?: string }).message ?? "WebSocket error"));
      ws.onmessage = (event) => this.onJsonText(event.data);
    }
  }

  /** Open a WebSocket offering `protocols`; an `mcp-ws.v1` one becomes a `Link` (wired
   * synchronously in the open event: `ws` may deliver the server's HELLO in that tick). */
  private async dial(
    offer: string[],
    how: { node?: string | undefined; worker?: string | undefined; bare?: boolean } = {},
  ): Promise<{ ws: WebSocketLike; link: Link | undefined }> {
    const Ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new UsageError("no WebSocket here: pass one, e.g. `new McpWsTransport(url, { WebSocket })` from the ws package");
    }
    const protocols = [...offer];
    const headers: Record<string, string> = { ...this.options.headers };
    const token = this.options.token;
    if (token !== undefined) {
      const inHeader = (this.options.tokenIn ?? (this.options.WebSocket ? "header" : "subprotocol")) === "header";
      if (inHeader) headers["Authorization"] = `Bearer ${token}`;
      else protocols.push(BEARER_SUBPROTOCOL_PREFIX + token);
    }
    let url = this.url;
    for (const [name, value] of [
      [NODE_PARAMETER, how.node],
      [WORKER_PARAMETER, how.worker],
    ] as const) {
      if (value === undefined) continue;
      // ":" and brackets stay as they are: a proxy compares the raw value (nginx's
      // $arg_mcp_ws_node is not decoded) with HOST:PORT.
      const raw = encodeURIComponent(value).replace(/%3A/g, ":").replace(/%5B/g, "[").replace(/%5D/g, "]");
      url += `${url.includes("?") ? "&" : "?"}${name}=${raw}`;
    }
    const ws = Object.keys(headers).length ? new Ctor(url, protocols, { headers }) : new Ctor(url, protocols);
    ws.binaryType = "arraybuffer";
    let link: Link | undefined;
    await new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => {
        ws.onopen = ws.onclose = null;
        // Closing a socket that is still connecting makes it report an error (the ws
        // package emits 'error', which would be uncaught without a handler): swallow it.
        ws.onerror = () => {};
        ws.close();
        reject(new HandshakeError(`no WebSocket handshake with ${this.url} within ${this.connectTimeout} ms`));
      }, this.connectTimeout);
      ws.onopen = () => {
        clearTimeout(timeout);
        if (ws.protocol === SUBPROTOCOL && !how.bare) link = this.adopt(ws);
        resolve();
      };
      ws.onerror = (event) => {
        clearTimeout(timeout);
        ws.onopen = ws.onclose = null;
        ws.onerror = () => {}; // a later error of the same socket has nobody to tell
        const detail = (event as { message?: string }).message ?? "the server refused or could not be reached";
        reject(new HandshakeError(`WebSocket handshake with ${this.url} failed: ${detail}`));
      };
      ws.onclose = (event) => {
        clearTimeout(timeout);
        reject(new HandshakeError(`the WebSocket closed during the handshake (${event.code})`));
      };
    });
    if (how.bare && ws.protocol !== SUBPROTOCOL) {
      ws.close(1000);
      throw new HandshakeError(`the server chose ${JSON.stringify(ws.protocol)} this time`);
    }
    if (ws.protocol !== SUBPROTOCOL && ws.protocol !== COMPAT_SUBPROTOCOL) {
      ws.close(1002, "no subprotocol");
      throw new HandshakeError(`the server chose subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`);
    }
    return { ws, link };
  }

  /** A new connection: it becomes `current` once ready (after its replay). */
  private adopt(ws: WebSocketLike): Link {
    const link = new Link(this, ws, this.options);
    this.links.add(link);
    this.last = link;
    this.connections += 1;
    return link;
  }

  /** Route one message from the SDK. */
  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    if (!this.started || this.ended || this.closing) {
      throw new ConnectionClosedError(this.last?.closedText() ?? "the connection is closed", this.termination?.code ?? ErrorCode.NO_ERROR);
    }
    if (this.jsonText) {
      this.jsonText.send(JSON.stringify(message));
      return;
    }
    const m = message as unknown as Message;
    if ("method" in m && "id" in m && isRequestId(m["id"])) {
      const link = await this.live(); // replays what was remembered before this request
      this.remember(m);
      await link.sendRequest(m, m["id"]);
      return;
    }
    if ("method" in m) {
      const params = m["params"] as { requestId?: unknown; reason?: unknown } | undefined;
      if (m["method"] === "notifications/cancelled" && isRequestId(params?.requestId)) {
        const id = params.requestId;
        const owner = [...this.links].find((link) => link.ownsRequest(id));
        if (owner) {
          owner.cancelRequest(id, String(params.reason ?? ""));
          return;
        }
      }
      const related = options?.relatedRequestId;
      const owner = related !== undefined ? [...this.links].find((link) => link.ownsPeerRequest(related)) : undefined;
      this.remember(m);
      const link = owner ?? (this.current?.usable ? this.current : undefined);
      link?.sendNotification(m, related); // no connection: dropped (replayed if it matters)
      return;
    }
    const id = m["id"];
    const owner = isRequestId(id) ? [...this.links].find((link) => link.ownsPeerRequest(id)) : undefined;
    owner?.sendResponse(m);
  }

  /** Leave: cancel what is in flight, GOAWAY, close the WebSockets (waits at most the
   * close timeout for the server's close frames). */
  async close(): Promise<void> {
    if (!this.started || this.ended) return;
    this.closing = true;
    if (this.jsonText) {
      this.jsonText.close(1000);
    }
    const links = [...this.links];
    for (const link of links) link.leave();
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, this.options.closeTimeoutMs ?? 5000));
    await Promise.race([Promise.all(links.map((link) => link.closed)), timeout]);
    for (const link of links) if (!link.ended) link.onSocketClosed(1006, "the close timed out");
    this.finish();
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

  // ------------------------------------------------------------------ handover

  /** @internal */
  goingAway(link: Link): void {
    this.settle(link);
    if (this.current !== link || !this.retry) return;
    this.current = undefined; // new requests move to a new connection, made now
    this.live().catch((error: unknown) => {
      if (!this.closing) this.onconnectionlost?.(error instanceof Error ? error : new Error(String(error)));
    });
  }

  /** @internal */
  linkClosed(link: Link): void {
    this.settle(link);
    this.links.delete(link);
    const wasCurrent = this.current === link;
    if (wasCurrent) this.current = undefined;
    if (this.closing) return;
    if (!this.retry) {
      this.finish(); // one connection: its end is ours
      return;
    }
    const graceful = link.termination?.code === ErrorCode.NO_ERROR;
    if (wasCurrent && !graceful) {
      this.onconnectionlost?.(new ConnectionClosedError(link.closedText(), link.termination?.code ?? ErrorCode.INTERNAL_ERROR));
    }
  }

  /** `link` is ending (counted once): a short-lived one was a failed attempt. */
  private settle(link: Link): void {
    const opened = link.openedAt;
    if (opened === undefined) return;
    link.openedAt = undefined;
    if (performance.now() - opened < RECONNECT_DELAY_MAX_MS) this.failures += 1;
    else this.failures = 0;
  }

  /** The connection for a new request: the current one, or a new one (replaying the
   * session's handshake), with jittered exponential backoff between failed attempts. */
  private async live(): Promise<Link> {
    const current = this.current;
    if (current?.usable) return current;
    if (!this.retry) return this.last!; // one connection: it answers or refuses itself
    this.connecting ??= this.reconnect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async reconnect(): Promise<Link> {
    let error: unknown;
    for (let attempt = 0; attempt < RECONNECT_ATTEMPTS; attempt++) {
      if (this.closing) break;
      if (this.failures) {
        const delay = Math.min(RECONNECT_DELAY_MS * 2 ** (this.failures - 1), RECONNECT_DELAY_MAX_MS);
        await new Promise((resolve) => setTimeout(resolve, delay * (0.5 + Math.random())));
      }
      let link: Link | undefined;
      try {
        link = (await this.dial([SUBPROTOCOL])).link!;
        await this.replay(link);
        if (!link.usable) {
          // Sent away already (and counted as a failed attempt when it was): next.
          error = new HandshakeError("the server sent the new connection away");
          continue;
        }
        this.current = link;
        return link;
      } catch (caught) {
        this.failures += 1;
        error = caught;
        link?.leave();
      }
    }
    throw new ConnectionClosedError(`no connection to the server: ${(error as Error | undefined)?.message ?? "closed"}`, ErrorCode.NO_ERROR);
  }

  private async replay(link: Link): Promise<void> {
    // No handshake completed yet: the SDK's own initialize is still to come.
    if (!this.initialize || !this.initialized) return;
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new HandshakeError("replaying the handshake timed out")), this.connectTimeout),
    );
    const steps = async (): Promise<void> => {
      await this.ask(link, this.initialize!);
      link.sendNotification(this.initialized!, undefined);
      for (const request of [this.logLevel, ...this.subscriptions.values()]) {
        if (request) await this.ask(link, request);
      }
    };
    await Promise.race([steps(), timeout]);
  }

  private async ask(link: Link, request: Message): Promise<void> {
    const id = `mcp-ws-replay-${++this.replays}`;
    const answer = await link.ask({ ...request, id } as Message, id);
    const error = answer["error"] as { message?: string } | undefined;
    if (error) throw new HandshakeError(`replaying ${String(request["method"])} failed: ${error.message ?? "error"}`);
  }

  private remember(message: Message): void {
    const method = message["method"];
    if (method === "initialize") this.initialize = message;
    else if (method === "notifications/initialized") this.initialized = message;
    else if (method === "logging/setLevel") this.logLevel = message;
    else if (method === "resources/subscribe" || method === "resources/unsubscribe") {
      const uri = String((message["params"] as { uri?: unknown } | undefined)?.uri ?? "");
      if (method === "resources/subscribe") this.subscriptions.set(uri, message);
      else this.subscriptions.delete(uri);
    }
  }

  private async resend(message: Message): Promise<void> {
    const id = message["id"] as RequestId;
    const count = (this.resends.get(id) ?? 0) + 1;
    this.resends.delete(id);
    if (count > RESEND_LIMIT) {
      const text = `refused unprocessed by ${count} connections in a row`;
      this.toSdk({ jsonrpc: "2.0", id, error: { code: REQUEST_REFUSED, message: text } });
      return;
    }
    if (this.resends.size >= RESENDS_KEPT) this.resends.clear(); // requests long answered
    this.resends.set(id, count);
    try {
      const link = await this.live();
      await link.sendRequest(message, id);
    } catch (error) {
      this.toSdk({ jsonrpc: "2.0", id, error: { code: CONNECTION_CLOSED, message: (error as Error).message } });
    }
  }

  // ------------------------------------------------------------------ to the SDK

  /**
   * Hand a message to the SDK, one per microtask: the SDK runs notification handlers a
   * microtask after `onmessage` but settles responses at once, so a response must not
   * overtake the notifications (progress) that arrived before it in the same WebSocket
   * message. Its credit goes back, on its connection, once the SDK has it.
   * @internal
   */
  toSdk(message: unknown, link?: Link, sid = 0, size = 0): void {
    this.inbox.push({ message, link, sid, size });
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
          item.link?.acknowledge(item.sid, item.size);
        }
      }
      this.scheduleInbox();
    });
  }

  /** The transport is over: `onclose` after what is still on its way to the SDK. */
  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.inbox.push("close");
    this.scheduleInbox();
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
    // A partial result for a `streamTool` call goes to that call, as on mcp-ws.v1 (with
    // no stream credit here: JSON text has none); anything else goes to the SDK.
    const params = (message as { method?: unknown; params?: { partialResultToken?: unknown } } | null)?.params;
    const token = params?.partialResultToken;
    const subscriber = typeof token === "string" || typeof token === "number" ? this.subscribers.get(token) : undefined;
    if (subscriber && (message as { method?: unknown }).method === PARTIAL_RESULT) {
      subscriber.deliver(params, 0);
      return;
    }
    this.toSdk(message);
  }

  private get connectTimeout(): number {
    return this.options.connectTimeoutMs ?? 10000;
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
