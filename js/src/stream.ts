/**
 * `streamTool(client, name, args?, options?)`: a tool's output as it is produced.
 *
 *     for await (const event of streamTool(client, "generate", { prompt: "hi" })) {
 *       if (event.type === "delta") process.stdout.write(event.text ?? "");
 *     }
 *
 * Events come in `seq` order with no gap: one `start`, `delta`s, then exactly one
 * `completed` or `failed`. Over mcp-ws the call's stream is read directly and credit goes
 * back to the server only as the iterator is pulled, so a consumer that stops pulling
 * stalls the server's producer (and only it); leaving the loop early cancels the call.
 * Over other transports the partial results arrive as SDK notifications (the client's
 * `fallbackNotificationHandler`). Against a server without the extension the stream is a
 * single `completed`. The same rules as the Python `stream_tool` (docs/streaming.md).
 */
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { type CallToolResult, CallToolResultSchema, EmptyResultSchema, McpError } from "@modelcontextprotocol/sdk/types.js";

import { ATTACH, CANCEL, type DirectSubscriber, McpWsTransport, OUTCOME_UNKNOWN, PARTIAL_RESULT } from "./transport.js";

/** The extension's identifier in capabilities and in the final result's `_meta`. */
export const EXTENSION_ID = "io.github.mcp-ws/streaming";

/** A content block as MCP has it (`{type: "text", text}`, `{type: "image", data, mimeType}`, ...). */
export type ContentBlock = { type: string } & Record<string, unknown>;

export type StreamEvent =
  | { type: "start"; meta?: unknown; handle?: string }
  | { type: "delta"; seq: number; text?: string; content?: ContentBlock[]; structuredContent?: unknown }
  | { type: "completed"; result: CallToolResult }
  | { type: "failed"; error: Error; result?: CallToolResult };

/** JSON-RPC code: no call with this handle that you may read (docs/streaming.md). */
export const UNKNOWN_HANDLE = -32005;

/** JSON-RPC code: the events after the cursor are no longer kept (data: `earliestSeq`). */
export const EVENTS_GONE = -32006;

export interface StreamToolOptions {
  /** Aborting cancels the call on the server; the stream ends with `failed`. */
  signal?: AbortSignal;
  /** Bounds the whole call (default: none); it then fails and the server is told. */
  timeoutMs?: number;
  /** Extra `_meta` for the request. */
  meta?: Record<string, unknown>;
}

/** The tool answered with `isError: true`; `result` holds its answer. */
export class ToolCallError extends Error {
  override name = "ToolCallError";
  constructor(
    message: string,
    readonly result: CallToolResult,
  ) {
    super(message);
  }
}

/** The caller cancelled the call (`cancel()`, its `signal`, or leaving the loop). */
export class CallCancelledError extends Error {
  override name = "CallCancelledError";
}

/** Times a streamed call is read on by its handle, each over a new connection, when the
 * connections keep being lost and their resumes refused. */
const READ_ON_ATTEMPTS = 8;

/** Seconds to wait, off mcp-ws, for deltas the result says were sent (no ordering there). */
const LATE_DELTA_GRACE_MS = 1000;
const NO_TIMEOUT_MS = 2 ** 31 - 1; // the largest delay setTimeout takes

let counter = 0;
const prefix = Math.random().toString(16).slice(2, 10);

interface Delivery {
  params: Record<string, unknown>;
  size: number;
}

type Pending = { kind: "partial"; delivery: Delivery } | { kind: "end" };

/** Route partial results carrying a token to their stream, per client (non-mcp-ws transports). */
const fallbackRoutes = new WeakMap<Client, Map<string | number, DirectSubscriber>>();

function routeFallback(client: Client): Map<string | number, DirectSubscriber> {
  let routes = fallbackRoutes.get(client);
  if (routes) return routes;
  routes = new Map();
  const table = routes;
  const previous = client.fallbackNotificationHandler;
  client.fallbackNotificationHandler = async (notification) => {
    const params = notification.params as { partialResultToken?: unknown } | undefined;
    const token = params?.partialResultToken;
    const subscriber = typeof token === "string" || typeof token === "number" ? table.get(token) : undefined;
    if (notification.method === PARTIAL_RESULT && subscriber) subscriber.deliver(params, 0);
    else await previous?.(notification);
  };
  fallbackRoutes.set(client, routes);
  return routes;
}

/** One streaming tool call: iterate it with `for await`. */
export class ToolStream implements AsyncIterableIterator<StreamEvent>, DirectSubscriber {
  /** The `partialResultToken` of this call. */
  readonly token = `mcpws-js-${prefix}-${++counter}`;
  /** The text received so far. */
  text = "";
  /** The call's handle (from its `start` event), to read it again with `attachStream`. */
  handle: string | undefined;
  /** The seq of the last event the iteration yielded (re-attach `after` it). */
  lastSeq = 0;
  private readonly controller = new AbortController();
  private readonly pending = new Map<number, Delivery>();
  private readonly queue: Pending[] = [];
  private wakeup: (() => void) | undefined;
  private ack: ((size: number) => void) | undefined;
  private nextSeq = 0;
  private started = false;
  private outcome: StreamEvent | undefined;
  private terminal: { event: StreamEvent; lastSeq: number | undefined } | undefined;
  private done = false;
  private routes: Map<string | number, DirectSubscriber> | undefined;

  constructor(
    protected readonly client: Client,
    readonly name: string,
    private readonly args: Record<string, unknown> | undefined,
    protected readonly options: StreamToolOptions = {},
  ) {
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.controller.abort(signal.reason);
      else signal.addEventListener("abort", () => this.controller.abort(signal.reason), { once: true });
    }
  }

  /** Whether mcp-ws carries this call (stream-level flow control). */
  get direct(): boolean {
    return this.ack !== undefined;
  }

  /** Cancel the call now; the iteration ends with `failed` (or the terminal event already on its way). */
  cancel(reason = "cancelled by the caller"): void {
    this.controller.abort(new Error(reason));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<StreamEvent>> {
    if (!this.started) this.start();
    while (!this.done) {
      const ready = this.pending.get(this.nextSeq);
      if (ready) {
        this.pending.delete(this.nextSeq);
        const event = this.event(ready);
        if (event) return { value: event, done: false };
        continue;
      }
      const item = this.queue.shift();
      if (item) {
        this.absorb(item);
        continue;
      }
      if (this.terminal) {
        const { event, lastSeq } = this.terminal;
        const late = lastSeq !== undefined && this.nextSeq <= lastSeq && !this.direct;
        if (late && (await this.waitFor(LATE_DELTA_GRACE_MS))) continue;
        return this.finish(event);
      }
      await this.waitFor(undefined);
    }
    return { value: undefined, done: true };
  }

  /** Leaving the loop early cancels the call and gives back what was not read. */
  async return(): Promise<IteratorResult<StreamEvent>> {
    if (!this.done) {
      this.done = true;
      this.controller.abort(new Error("the caller stopped reading"));
      this.release();
    }
    return { value: undefined, done: true };
  }

  // ------------------------------------------------------------------ DirectSubscriber

  attach(ack: (size: number) => void): void {
    this.ack = ack;
  }

  deliver(params: unknown, size: number): void {
    if (this.done || typeof params !== "object" || params === null) {
      if (size) this.ack?.(size);
      return;
    }
    const fields = params as Record<string, unknown>;
    if (this.handle === undefined && fields["seq"] === 0 && typeof fields["handle"] === "string") {
      this.handle = fields["handle"]; // known before the start is read: see readOn
    }
    this.queue.push({ kind: "partial", delivery: { params: params as Record<string, unknown>, size } });
    this.wake();
  }

  // ------------------------------------------------------------------ internals

  private start(): void {
    this.started = true;
    const transport = this.client.transport;
    if (transport instanceof McpWsTransport) transport.subscribe(this.token, this);
    else (this.routes = routeFallback(this.client)).set(this.token, this);
    const timeout = this.options.timeoutMs ?? NO_TIMEOUT_MS;
    this.request(this.controller.signal, timeout)
      .then(
        (result) => {
          const r = result as CallToolResult;
          if (r.isError) {
            const text = r.content.map((b) => (b.type === "text" ? b.text : "")).join("");
            return { event: { type: "failed", error: new ToolCallError(text || `tool ${this.name} failed`, r), result: r } as StreamEvent, lastSeq: lastSeq(r) };
          }
          return { event: { type: "completed", result: r } as StreamEvent, lastSeq: lastSeq(r) };
        },
        (error: unknown) => {
          let failure = error instanceof Error ? error : new Error(String(error));
          if (this.controller.signal.aborted) {
            const reason = this.controller.signal.reason as unknown;
            const text = reason instanceof Error ? reason.message : String(reason ?? "cancelled by the caller");
            failure = new CallCancelledError(text, { cause: error });
          }
          return { event: { type: "failed", error: failure } as StreamEvent, lastSeq: undefined };
        },
      )
      .then((terminal) => {
        this.terminal = terminal;
        this.queue.push({ kind: "end" });
        this.wake();
      });
  }

  /** Send the request whose answer ends the stream; if its connection's resume was
   * refused, read the call on by its handle (`readOn`). */
  protected async request(signal: AbortSignal, timeout: number): Promise<CallToolResult> {
    const params = {
      name: this.name,
      arguments: this.args,
      _meta: { ...this.options.meta, partialResultToken: this.token },
    };
    try {
      return (await this.client.callTool(params, undefined, { signal, timeout })) as CallToolResult;
    } catch (error) {
      if (!(error instanceof McpError) || error.code !== OUTCOME_UNKNOWN || this.handle === undefined) throw error;
      return await this.readOn(error, signal, timeout);
    }
  }

  /** The connection that carried the call is gone and its resume was refused, but the
   * server may still run (and keep) the call: read it on by its handle, after the last
   * event handed out, over the transport's new connection (events that came twice are
   * dropped by seq); again if that connection is lost the same way, up to
   * `READ_ON_ATTEMPTS` times. Fails with `lost` if the server no longer has it. */
  private async readOn(lost: McpError, signal: AbortSignal, timeout: number): Promise<CallToolResult> {
    for (let attempt = 0; attempt < READ_ON_ATTEMPTS; attempt++) {
      const params = { handle: this.handle, after: this.nextSeq - 1, _meta: { partialResultToken: this.token } };
      try {
        return await this.client.request({ method: ATTACH, params }, CallToolResultSchema, { signal, timeout });
      } catch (error) {
        if (!(error instanceof McpError)) throw error;
        if (error.code === UNKNOWN_HANDLE || error.code === EVENTS_GONE) throw lost;
        if (error.code !== OUTCOME_UNKNOWN) throw error;
      }
    }
    throw lost;
  }

  private absorb(item: Pending): void {
    if (item.kind === "end") return; // the terminal is read from this.terminal
    const { params, size } = item.delivery;
    const seq = params["seq"];
    if (typeof seq !== "number" || !Number.isInteger(seq) || seq < this.nextSeq || this.pending.has(seq)) {
      if (size) this.ack?.(size); // malformed or a duplicate
      return;
    }
    this.pending.set(seq, item.delivery);
  }

  private event({ params, size }: Delivery): StreamEvent | undefined {
    if (size) this.ack?.(size); // taken: the server may send that much more
    const seq = this.nextSeq++;
    this.lastSeq = seq;
    const kind = params["event"];
    if (kind === "start") return this.startEvent(params);
    if (kind !== "delta") return undefined; // an event this version does not know
    const raw = params["content"];
    const content = Array.isArray(raw) ? (raw.filter((b) => typeof b === "object" && b !== null) as ContentBlock[]) : [];
    const text = content.map((b) => (b.type === "text" && typeof b["text"] === "string" ? b["text"] : "")).join("");
    this.text += text;
    const event: StreamEvent = { type: "delta", seq, content };
    if (text) event.text = text;
    if (params["structuredContent"] !== undefined) event.structuredContent = params["structuredContent"];
    return event;
  }

  private startEvent(params: Record<string, unknown>): StreamEvent {
    const event: StreamEvent = { type: "start" };
    if (params["meta"] !== undefined) event.meta = params["meta"];
    const handle = params["handle"];
    if (typeof handle === "string") this.handle = event.handle = handle;
    const after = params["after"]; // a re-attach: the events continue after it
    if (typeof after === "number" && Number.isInteger(after) && after >= this.nextSeq) {
      this.nextSeq = after + 1;
      this.lastSeq = after;
    }
    return event;
  }

  private finish(event: StreamEvent): IteratorResult<StreamEvent> {
    this.outcome = event;
    this.done = true;
    this.release();
    return { value: event, done: false };
  }

  /** Unsubscribe and give back the credit of everything not read. */
  private release(): void {
    const transport = this.client.transport;
    if (transport instanceof McpWsTransport) transport.unsubscribe(this.token);
    this.routes?.delete(this.token);
    for (const { size } of this.pending.values()) if (size) this.ack?.(size);
    this.pending.clear();
    for (const item of this.queue.splice(0)) if (item.kind === "partial" && item.delivery.size) this.ack?.(item.delivery.size);
    this.wake();
  }

  /** Wait for the next delivery (or `ms`); whether one came. */
  private waitFor(ms: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      this.wakeup = () => {
        if (timer !== undefined) clearTimeout(timer);
        this.wakeup = undefined;
        resolve(true);
      };
      if (ms !== undefined) {
        timer = setTimeout(() => {
          this.wakeup = undefined;
          resolve(false);
        }, ms);
      }
    });
  }

  private wake(): void {
    this.wakeup?.();
  }

  /** The terminal event, once the iteration reached it. */
  get result(): StreamEvent | undefined {
    return this.outcome;
  }
}

function lastSeq(result: CallToolResult): number | undefined {
  const meta = result._meta as Record<string, { lastSeq?: unknown }> | undefined;
  const last = meta?.[EXTENSION_ID]?.lastSeq;
  return typeof last === "number" && Number.isInteger(last) ? last : undefined;
}

/** Call tool `name` and stream its partial output (see the module comment). */
export function streamTool(
  client: Client,
  name: string,
  args?: Record<string, unknown>,
  options?: StreamToolOptions,
): ToolStream {
  return new ToolStream(client, name, args, options);
}

export interface AttachOptions {
  /** Read the deltas with seq > `after` (default: from the first one the server keeps). */
  after?: number;
  /** Aborting detaches this reader (as leaving the loop does); the call goes on. */
  signal?: AbortSignal;
  /** Bounds the whole read (default: none). */
  timeoutMs?: number;
}

/** A `ToolStream` reading a call started elsewhere, by its handle; get one from `attachStream`. */
export class AttachedStream extends ToolStream {
  constructor(
    client: Client,
    readonly callHandle: string,
    private readonly after: number | undefined,
    options: AttachOptions = {},
  ) {
    const { signal, timeoutMs } = options;
    super(client, `attached call ${String(callHandle).slice(0, 8)}…`, undefined, { signal, timeoutMs });
    this.handle = callHandle;
  }

  /** Cancel the call itself on the server (not just this reader); the iteration ends with
   * the call's outcome: `failed` with code -32003 once the cancel took effect. */
  override cancel(): void {
    void this.client
      .request({ method: CANCEL, params: { handle: this.callHandle } }, EmptyResultSchema)
      .catch(() => undefined); // the attach's own answer says how the call ended
  }

  protected override async request(signal: AbortSignal, timeout: number): Promise<CallToolResult> {
    const params: Record<string, unknown> = {
      handle: this.callHandle,
      _meta: { partialResultToken: this.token },
    };
    if (this.after !== undefined) params["after"] = this.after;
    return await this.client.request({ method: ATTACH, params }, CallToolResultSchema, { signal, timeout });
  }
}

/**
 * Read the streamed call `handle` (a `start` event's `handle`) again: its kept deltas with
 * seq > `after`, then the live ones, then its outcome, as `streamTool` yields them. Every
 * error arrives as `failed` with an `McpError`: -32005 unknown handle (also another
 * principal's, past its retention, or malformed), -32006 events gone (`error.data.earliestSeq`),
 * -32602 a negative `after`. Leaving the loop early detaches; `cancel()` cancels the call.
 */
export function attachStream(client: Client, handle: string, options: AttachOptions = {}): AttachedStream {
  return new AttachedStream(client, handle, options.after, options);
}
