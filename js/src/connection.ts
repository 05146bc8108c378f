/**
 * The sans-I/O mcp-ws connection: bytes in, events out; calls in, bytes out. It never does
 * I/O and never reads a clock it was not given. The same rules as the Python core
 * (`mcp_ws/protocol/connection.py`); `docs/protocol.md` is the contract.
 *
 *     const conn = new Connection("client");
 *     const sid = conn.openStream({ jsonrpc: "2.0", id: 1, method: "ping" }, true);
 *     for (const message of conn.dataToSend()) socket.send(message);
 *     const events = conn.receiveData(bytes);  // one received binary message
 *     conn.acknowledge(sid, event.size);       // when the application consumed it
 *
 * The peer's misbehaviour never throws out of `receiveData`: a stream error cancels the
 * stream (a `cancelled` event), a connection error queues GOAWAY and returns a
 * `terminated` event with the WebSocket close code to use. Misuse throws `UsageError`.
 *
 * The connection dispatches frames and keeps the connection's life (HELLO, GOAWAY,
 * keepalive); each concern it drives lives in a module of its own, named as in the Python
 * core: `streams` (the stream table and `max_streams` slots), `state` (the transition
 * table), `assembly` (fragments into messages, with early credit), `windows` (credit,
 * both directions), `scheduler` (round-robin sending), `limits` (the abuse guards), `events`,
 * `errors`, `settings` and `frames` (the codec).
 */
import {
  ErrorCode,
  Flag,
  FrameType,
  MESSAGE_OVERHEAD,
  closeCodeFor,
  parseErrorCode,
} from "./constants.js";
import {
  ConnectionClosedError,
  MessageTooLargeForPeer,
  ProtocolError,
  StreamLimitError,
  StreamStateError,
  UsageError,
} from "./errors.js";
import {
  type Frame,
  InvalidMessage,
  type Message,
  decodeFrame,
  decodePayload,
  encodeFrame,
  encodePayload,
  unpackMessage,
} from "./frames.js";
import type { Event } from "./events.js";
import { DEFAULT_LIMITS, Guards, type Limits } from "./limits.js";
import { MessageAssembler, concat } from "./assembly.js";
import { Scheduler } from "./scheduler.js";
import { Stream, StreamTable } from "./streams.js";
import { AFTER_RECV_END, AFTER_SEND_END, RECEIVING, SENDING, type StreamState, transition } from "./state.js";
import {
  MIN_FRAME_SIZE,
  MIN_WINDOW,
  type Settings,
  makeSettings,
  settingsFromWire,
  settingsToWire,
} from "./settings.js";
import { FlowControl } from "./windows.js";
import {
  ACK_EVERY,
  MAX_UNACKED_BYTES,
  MAX_UNACKED_FRAMES,
  ReplayBuffer,
  type ResumeHello,
  resumeFromSettings,
  resumeToWire,
} from "./resume.js";

export type Role = "client" | "server";

export type { Event } from "./events.js";
export { DEFAULT_LIMITS, type Limits } from "./limits.js";

/** Extra seconds of silence, beyond twice the ping interval, before the peer is dead. */
export const DEAD_PEER_GRACE = 5;


/** One side of an mcp-ws v1 connection (see the module comment). */
export class Connection {
  readonly localSettings: Settings;
  readonly limits: Limits;
  peerSettings: Settings;
  peerHelloReceived = false;
  state: "open" | "goingAway" | "closed" = "open";
  closeCode: number | undefined;
  errorCode: ErrorCode | undefined;
  rtt: number | undefined;

  private readonly clock: () => number;
  private readonly streams: StreamTable;
  private readonly session: Stream; // stream 0
  private readonly scheduler = new Scheduler();
  private readonly guards: Guards;
  private immediate: Uint8Array[] = [];
  private readonly flow: FlowControl;
  private held = 0;
  private readonly assembly: MessageAssembler;
  private goawaySent = false;
  private goawayReceived = false;
  private helloSent = false;
  private readonly pings = new Map<string, number>();
  private pingCounter = 0;
  private keepalivePingSent = false;
  private readonly created: number;
  private lastReceived: number;
  // Resume (docs/protocol.md section 9). Frames are numbered from the start when we
  // offer it, and forgotten if the peer does not take it up.
  private readonly resumeOffer: ResumeHello | undefined;
  private negotiated = false; // both HELLOs carried a resume map
  private replay: ReplayBuffer | undefined;
  private received = 0; // frames received after the peer's HELLO (when negotiated)
  private positionSent = 0; // the last position we told the peer
  /** The token to resume with (the server's, from its latest HELLO). */
  resumeToken: string | undefined;
  /** Seconds the server keeps a detached session (from its HELLO). */
  resumeGrace: number | undefined;
  /** The server's name for itself, where a resume must go (from its HELLO). */
  resumeNode: string | undefined;
  /** Which of the server's worker processes holds the connection (from its HELLO). */
  resumeWorker: string | undefined;
  /** The link is gone and the connection waits to resume (`suspend`). */
  suspended = false;
  private awaitingResume = false; // a client's resume HELLO is out, the answer is not
  private linkOut: Uint8Array[] = []; // a new link's HELLO and the frames sent again

  constructor(
    readonly role: Role,
    settings: Partial<Settings> = {},
    options: { limits?: Partial<Limits>; clock?: () => number; resume?: ResumeHello } = {},
  ) {
    this.localSettings = makeSettings(settings);
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.clock = options.clock ?? (() => performance.now() / 1000);
    const now = this.clock();
    // Until the peer's HELLO, assume the smallest legal limits (docs/protocol.md section 4).
    this.peerSettings = makeSettings({
      initial_window: MIN_WINDOW,
      connection_window: MIN_WINDOW,
      max_frame_size: MIN_FRAME_SIZE,
    });
    const maxMessage = this.localSettings.max_message_size;
    this.assembly = new MessageAssembler(maxMessage, 4 * maxMessage); // the reassembly budget
    this.session = new Stream(0, false, 0, 0);
    this.streams = new StreamTable(role === "client" ? 1 : 0, this.limits.recentlyClosed);
    this.flow = new FlowControl(this.streams, MIN_WINDOW, this.localSettings.connection_window);
    this.created = this.lastReceived = now;
    this.guards = new Guards(this.limits, this.clock);
    const resume = options.resume;
    this.resumeOffer = resume;
    this.replay = resume ? new ReplayBuffer() : undefined;
    this.resumeToken = resume?.token;
    this.resumeGrace = resume?.grace;
    this.resumeNode = resume?.node;
    this.resumeWorker = resume?.worker;
    const hello = settingsToWire(this.localSettings);
    if (resume) hello["resume"] = resumeToWire(resume);
    this.immediate.push(encodeFrame({ type: 0, settings: hello }));
  }

  /** Whether a lost link can be resumed (docs/protocol.md section 9). */
  get resumable(): boolean {
    return this.negotiated && this.replay !== undefined && !this.closed && this.resumeToken !== undefined;
  }

  /** Bytes of frames kept for the peer until it acknowledges them. */
  get replayBuffered(): number {
    return this.replay?.bytes ?? 0;
  }

  /** Frames received from the peer since its HELLO (counted with resume on). */
  get receivedPosition(): number {
    return this.received;
  }

  // ------------------------------------------------------------------ queries

  get closed(): boolean {
    return this.state === "closed";
  }

  /** Streams (other than 0) that are neither closed nor reset. */
  get openStreamCount(): number {
    return this.streams.size;
  }

  /** How many streams of ours may hold a slot at once (the peer's max_streams, and ours). */
  get streamLimit(): number {
    return Math.min(this.peerSettings.max_streams, this.localSettings.max_streams);
  }

  /** How many more streams `openStream` would accept now (0 when closing). */
  get streamSlots(): number {
    if (this.closed || this.goawayReceived) return 0;
    return Math.max(this.streamLimit - this.streams.localActive.size, 0);
  }

  /** Whether `openStream` would succeed now (`max_streams` and shutdown). */
  get canOpenStream(): boolean {
    return this.streamSlots > 0;
  }

  /** Bytes received and held for the application (messages not acknowledged, fragments). */
  get bufferedReceived(): number {
    return this.held + this.assembly.buffered;
  }

  /** Whether the I/O layer should close the WebSocket now. */
  get isFinished(): boolean {
    return this.closed || (this.state === "goingAway" && this.streams.size === 0);
  }

  /** Whether `dataToSend` may return something now. */
  get hasDataToSend(): boolean {
    if (this.suspended) return this.linkOut.length > 0;
    return this.immediate.length > 0 || this.linkOut.length > 0 || (!this.closed && this.scheduler.hasPending());
  }

  /** The state of a live stream, or undefined once it is finished or unknown. */
  streamState(streamId: number): StreamState | undefined {
    return this.streams.get(streamId)?.state;
  }

  /** Bytes that could go out on `streamId` now (queued data counts as spent). */
  availableCredit(streamId: number): number {
    // Stream 0 has no window of its own: the connection's is all it has.
    const stream = streamId === 0 ? this.session : this.streams.get(streamId);
    if (!stream) return 0;
    const credit = this.flow.credit(streamId);
    return Math.max(credit - this.scheduler.buffered(streamId), 0);
  }

  /** Bytes queued for sending and not yet framed (one stream, or all). */
  buffered(streamId?: number): number {
    return this.scheduler.buffered(streamId);
  }

  // ------------------------------------------------------------------ sending

  /** Open a new stream carrying `message` in its OPEN frame; returns its id. */
  openStream(message: Message, end = false): number {
    this.checkOpen();
    if (this.goawayReceived) throw new StreamStateError("the peer sent GOAWAY: no new streams on this connection");
    if (this.streams.localActive.size >= this.streamLimit) {
      throw new StreamLimitError(`${this.streams.localActive.size} streams hold a slot, the limit is ${this.streamLimit}`);
    }
    const payload = this.encode(message);
    const stream = this.streams.openLocal(this.peerSettings.initial_window, this.localSettings.initial_window);
    const sid = stream.id;
    if (end) stream.state = "halfClosedLocal";
    // The OPEN goes out now, in id order, with as much of the message as credit allows.
    const first = Math.min(payload.length, this.peerSettings.max_frame_size, this.flow.credit(sid));
    this.flow.consumeSend(sid, first);
    const rest = payload.subarray(first);
    const flags = rest.length ? Flag.MORE : end ? Flag.END : Flag.NONE;
    this.immediate.push(encodeFrame({ type: 1, streamId: sid, flags, payload: payload.subarray(0, first) }));
    if (rest.length) this.push(stream, rest, end);
    return sid;
  }

  /** Queue one message on a stream (0: the session stream); `end` sends END after it. */
  sendMessage(streamId: number, message: Message, end = false): void {
    this.checkOpen();
    if (streamId === 0) {
      if (end) throw new StreamStateError("stream 0 cannot be ended");
      this.push(this.session, this.encode(message), false);
      return;
    }
    const stream = this.sendable(streamId, end);
    this.push(stream, this.encode(message), end);
    if (end) this.ended(stream);
  }

  /** Send END on a stream without a message (after whatever is queued on it). */
  endStream(streamId: number): void {
    this.checkOpen();
    if (streamId === 0) throw new StreamStateError("stream 0 cannot be ended");
    const stream = this.sendable(streamId, true);
    this.push(stream, new Uint8Array(0), true);
    this.ended(stream);
  }

  /** Reset a stream: CANCEL goes out ahead of data, queued data is discarded. */
  cancelStream(streamId: number, code: ErrorCode = ErrorCode.CANCELLED, reason = ""): void {
    if (streamId === 0) throw new StreamStateError("stream 0 cannot be cancelled");
    const stream = this.streams.get(streamId);
    if (!stream || this.closed || transition(stream.state, "sendCancel")[0] !== "ok") return;
    this.reset(stream, code, reason, true);
  }

  /**
   * The application consumed `size` bytes of messages from `streamId`: credit goes back
   * (batched). Returns whether a CREDIT frame was queued.
   */
  acknowledge(streamId: number, size: number): boolean {
    if (size < 0) throw new UsageError("size must not be negative");
    const stream = streamId === 0 ? this.session : this.streams.find(streamId);
    if (!stream || this.closed || size === 0) return false;
    if (size > stream.unacked) {
      throw new UsageError(`acknowledging ${size} bytes on stream ${streamId}, only ${stream.unacked} delivered`);
    }
    stream.unacked -= size;
    this.held -= size;
    const early = Math.min(size, stream.early);
    stream.early -= early;
    this.assembly.settle(early);
    const granted = this.refill(stream, size - early);
    if (stream.unacked === 0 && stream.id !== 0) {
      this.streams.consumedAll(stream);
    }
    return granted;
  }

  /** Send a PING; its ACK arrives as a `pingAck` event with the RTT. */
  ping(): number {
    this.checkOpen();
    this.pingCounter += 1;
    this.pings.set(String(this.pingCounter), this.clock());
    this.immediate.push(encodeFrame(this.pingFrame(this.pingCounter, false)));
    return this.pingCounter;
  }

  /** GOAWAY: with NO_ERROR open streams finish; with an error the connection ends now. */
  close(code: ErrorCode = ErrorCode.NO_ERROR, reason = ""): void {
    if (this.closed) return;
    if (code === ErrorCode.NO_ERROR) {
      if (!this.goawaySent) {
        this.goawaySent = true;
        this.state = "goingAway";
        this.immediate.push(encodeFrame({ type: 6, lastStreamId: this.streams.highestRemote, code: 0, reason }));
      }
      return;
    }
    this.terminate(code, reason, false, undefined);
  }

  /** WebSocket binary messages to send now: control frames first, then data round-robin. */
  dataToSend(): Uint8Array[] {
    if (this.suspended) {
      const out = this.linkOut; // nothing but a new link's HELLO (a client's resume)
      this.linkOut = [];
      return out;
    }
    let frames = this.immediate;
    this.immediate = [];
    const helloFirst = !this.helloSent;
    this.helloSent = true;
    this.guards.repliesSent();
    if (!this.closed) this.popData(frames);
    const replay = this.replay;
    if (replay && frames.length && !this.closed) {
      replay.add(helloFirst ? frames.slice(1) : frames);
      if (replay.length > MAX_UNACKED_FRAMES || replay.bytes > MAX_UNACKED_BYTES) this.giveUpResume();
    }
    if (this.linkOut.length) {
      frames = [...this.linkOut, ...frames]; // a new link: its HELLO, then the frames sent again
      this.linkOut = [];
    }
    return coalesce(frames, this.peerSettings.max_frame_size + MESSAGE_OVERHEAD);
  }

  // ------------------------------------------------------------------ timers

  /** When `tick` next has work (clock time), or undefined. */
  nextDeadline(): number | undefined {
    if (this.closed || this.suspended) return undefined;
    if (!this.peerHelloReceived) return this.created + this.limits.helloTimeout;
    const interval = this.localSettings.ping_interval;
    if (!interval) return undefined;
    if (this.keepalivePingSent) return this.lastReceived + 2 * interval + DEAD_PEER_GRACE;
    return this.lastReceived + interval;
  }

  /** Run the timers: HELLO timeout, keepalive PING, dead-peer detection. */
  tick(now: number = this.clock()): Event[] {
    if (this.closed || this.suspended) return [];
    if (!this.peerHelloReceived) {
      if (now - this.created >= this.limits.helloTimeout) {
        return [this.fail(new ProtocolError("no HELLO from the peer in time", ErrorCode.TIMEOUT))];
      }
      return [];
    }
    const interval = this.localSettings.ping_interval;
    if (!interval) return [];
    const silence = now - this.lastReceived;
    if (silence >= 2 * interval + DEAD_PEER_GRACE) {
      if (this.resumable) {
        this.suspend();
        return [{ kind: "linkLost", reason: `peer silent for ${silence.toFixed(1)} s` }];
      }
      return [this.fail(new ProtocolError(`peer silent for ${silence.toFixed(1)} s`, ErrorCode.TIMEOUT))];
    }
    if (silence >= interval && !this.keepalivePingSent) {
      this.keepalivePingSent = true;
      this.ping();
    }
    return [];
  }

  // ------------------------------------------------------------------ receiving

  /** Process one WebSocket binary message from the peer. */
  receiveData(data: Uint8Array): Event[] {
    if (this.closed) return [];
    this.lastReceived = this.clock();
    this.keepalivePingSent = false;
    const events: Event[] = [];
    try {
      // Frames are checked one at a time, each handled before the next is looked at: a
      // malformed frame ends the connection after the well-formed ones before it.
      const limit = this.localSettings.max_frame_size;
      for (const raw of unpackMessage(data, limit)) {
        const counted = this.peerHelloReceived && this.negotiated;
        const frame = decodeFrame(raw, limit);
        if (counted) this.received += 1; // a well-formed frame's position (section 9)
        this.handle(frame, events);
        if (this.closed) break;
      }
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      events.push(this.fail(error));
    }
    if (this.negotiated && this.received - this.positionSent >= ACK_EVERY && !this.closed && !this.suspended) {
      this.immediate.push(encodeFrame({ type: 4, streamId: 0, increment: 0, received: this.position() }));
    }
    return events;
  }

  /** A text message arrived, which mcp-ws.v1 forbids: the connection ends (1003). */
  receiveText(): Event[] {
    if (this.closed) return [];
    return [this.fail(new ProtocolError("text message on mcp-ws.v1"), 1003)];
  }

  /**
   * The WebSocket ended without an error GOAWAY. After a graceful GOAWAY with every
   * stream done this is NO_ERROR (1000); otherwise every stream fails (1006).
   */
  connectionLost(reason = "the connection was lost"): Event[] {
    if (this.closed) return [];
    const events: Event[] = [];
    if (this.isFinished) {
      this.terminate(ErrorCode.NO_ERROR, "closed after GOAWAY", true, events, 1000);
    } else {
      this.terminate(ErrorCode.INTERNAL_ERROR, reason, true, events, 1006, this.negotiated);
    }
    return events;
  }

  // ------------------------------------------------------------------ resume

  /**
   * The link is gone but the connection can resume (`resumable`): keep every stream,
   * queue what is sent meanwhile, send nothing, run no timer. Next: `beginResume` (a
   * client) or `resumeAccepted` (a server) on a new link, or `connectionLost`.
   */
  suspend(): void {
    if (!this.resumable) throw new UsageError("this connection cannot resume");
    this.suspended = true;
    this.awaitingResume = false;
    this.linkOut = [];
  }

  /** A client on a new link: queue the HELLO that asks to resume. */
  beginResume(): void {
    if (this.role !== "client" || !this.suspended || this.resumeToken === undefined) {
      throw new UsageError("beginResume is for a suspended client connection");
    }
    this.linkOut = [this.helloFrame({ token: this.resumeToken, received: this.received })];
    this.awaitingResume = true;
    this.peerHelloReceived = false; // the server's HELLO comes first again
  }

  /** A server on a new link whose client asked to resume with `received`. */
  resumeAccepted(received: number, token: string, grace?: number): void {
    if (this.role !== "server" || !this.suspended || !this.replay) {
      throw new UsageError("resumeAccepted is for a suspended server connection");
    }
    this.replay.acknowledge(received);
    this.resumeToken = token;
    if (grace !== undefined) this.resumeGrace = grace;
    const answer: ResumeHello = { token, received: this.received };
    if (this.resumeGrace !== undefined) answer.grace = this.resumeGrace;
    if (this.resumeNode !== undefined) answer.node = this.resumeNode;
    if (this.resumeWorker !== undefined) answer.worker = this.resumeWorker;
    this.relink([this.helloFrame(answer), ...this.replay.unacknowledged()]);
  }

  private relink(out: Uint8Array[]): void {
    this.suspended = false;
    this.awaitingResume = false;
    this.linkOut = out;
    this.lastReceived = this.clock();
    this.keepalivePingSent = false;
    this.wakeAll();
  }

  private helloFrame(resume: ResumeHello): Uint8Array {
    const hello = settingsToWire(this.localSettings);
    hello["resume"] = resumeToWire(resume);
    return encodeFrame({ type: 0, settings: hello });
  }

  /** Our position for the peer (on CREDIT and PING), when resume is on. */
  private position(): number | undefined {
    if (!this.negotiated) return undefined;
    this.positionSent = this.received;
    return this.received;
  }

  /** A PING (or its ACK) with our position when resume is on. */
  private pingFrame(opaque: number | bigint, ack: boolean): Frame {
    const position = this.position();
    return position === undefined ? { type: 5, opaque, ack } : { type: 5, opaque, ack, received: position };
  }

  /** The peer's position, from a CREDIT or PING (ignored without resume). */
  private acknowledged(received: unknown): void {
    if (!this.negotiated || received === undefined) return;
    const n = typeof received === "bigint" && received <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(received) : received;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new ProtocolError(`position must be an integer, got ${String(received)}`);
    }
    this.replay?.acknowledge(n);
  }

  private giveUpResume(): void {
    this.replay?.clear();
    this.replay = undefined;
  }

  private onResumeAnswer(resume: ResumeHello | undefined, events: Event[]): void {
    this.peerHelloReceived = true;
    if (!resume || resume.refused !== undefined || resume.received === undefined) {
      const why = resume?.refused ?? "not resumable";
      this.suspended = false;
      this.terminate(ErrorCode.NO_ERROR, `resume refused: ${why}`, true, events, 1000, true);
      return;
    }
    this.replay!.acknowledge(resume.received);
    if (resume.token !== undefined) this.resumeToken = resume.token;
    if (resume.grace !== undefined) this.resumeGrace = resume.grace;
    const resent = this.replay!.unacknowledged();
    this.relink(resent);
    events.push({ kind: "resumed", resent: resent.length });
  }

  private handle(frame: Frame, events: Event[]): void {
    if (!this.peerHelloReceived) {
      if (frame.type !== FrameType.HELLO) throw new ProtocolError("the first frame must be HELLO");
      const resume = resumeFromSettings(frame.settings);
      if (this.awaitingResume) {
        this.onResumeAnswer(resume, events);
        return;
      }
      const settings = settingsFromWire(frame.settings);
      if (this.resumeOffer) {
        if (resume && (this.role === "server" || resume.token !== undefined)) {
          this.negotiated = true;
          if (this.role === "client") {
            this.resumeToken = resume.token;
            this.resumeGrace = resume.grace;
            this.resumeNode = resume.node;
            this.resumeWorker = resume.worker;
          }
        } else {
          this.replay = undefined; // the peer does not resume: number nothing
        }
      }
      this.peerHelloReceived = true;
      const delta = settings.initial_window - this.peerSettings.initial_window;
      this.flow.peerSettingsChanged(delta, settings.connection_window - this.peerSettings.connection_window);
      this.peerSettings = settings;
      this.wakeAll();
      events.push({ kind: "hello", settings });
      return;
    }
    switch (frame.type) {
      case FrameType.DATA:
        this.onData(frame.streamId, frame.flags, frame.payload, events);
        return;
      case FrameType.OPEN:
        this.onOpen(frame.streamId, frame.flags, frame.payload, events);
        return;
      case FrameType.CREDIT:
        this.acknowledged(frame.received);
        if (frame.increment === 0 && frame.streamId === 0 && this.negotiated && frame.received !== undefined) {
          return; // an acknowledgement only (section 9)
        }
        this.onCredit(frame.streamId, frame.increment, events);
        return;
      case FrameType.CANCEL:
        this.onCancel(frame.streamId, frame.code, frame.reason, events);
        return;
      case FrameType.PING:
        this.acknowledged(frame.received);
        this.onPing(frame.opaque, frame.ack, events);
        return;
      case FrameType.GOAWAY:
        this.onGoaway(frame.lastStreamId, frame.code, frame.reason, events);
        return;
      case FrameType.HELLO:
        throw new ProtocolError("second HELLO");
      default:
        this.guards.useless("frame of unknown type");
    }
  }

  private onOpen(sid: number, flags: number, payload: Uint8Array, events: Event[]): void {
    this.streams.checkRemoteId(sid);
    if (this.goawaySent || this.streams.remoteActive.size >= this.localSettings.max_streams) {
      this.dropped(payload.length); // not started: the bytes count and are credited back
      this.streams.rememberClosed(sid);
      this.guards.cancel();
      this.reply({ type: 3, streamId: sid, code: ErrorCode.REFUSED_STREAM, reason: "refused" });
      return;
    }
    this.streams.openRemote(sid, this.peerSettings.initial_window, this.localSettings.initial_window);
    events.push({ kind: "opened", streamId: sid });
    this.onData(sid, flags, payload, events);
  }

  private onData(sid: number, flags: number, payload: Uint8Array, events: Event[]): void {
    const size = payload.length;
    const stream = sid === 0 ? this.session : this.streams.get(sid);
    if (!stream) {
      this.streams.checkKnown(sid);
      this.dropped(size);
      if (!this.streams.recentlyClosed(sid)) this.guards.useless(`DATA for forgotten stream ${sid}`);
      return;
    }
    const end = (flags & Flag.END) !== 0;
    const more = (flags & Flag.MORE) !== 0;
    if (sid === 0 && end) throw new ProtocolError("END on stream 0");
    if (size === 0 && !end && !more && !stream.partial) {
      this.guards.useless("empty DATA frame");
      return;
    }
    if (size || more || stream.partial) {
      if (!RECEIVING.has(stream.state)) {
        this.dropped(size);
        if (transition(stream.state, "recvData")[0] === "streamClosed") {
          this.streamError(stream, ErrorCode.STREAM_CLOSED, "DATA after END", events);
        }
        return;
      }
      this.grant(0, this.flow.dataReceived(stream, size));
      this.receiveFragment(stream, payload, more, events);
      if (stream.state === "reset") return;
    }
    if (end) {
      const after = AFTER_RECV_END.get(stream.state);
      if (after === undefined) {
        if (transition(stream.state, "recvEnd")[0] === "streamClosed") {
          this.streamError(stream, ErrorCode.STREAM_CLOSED, "END after END", events);
        }
        return;
      }
      if (stream.partial) {
        this.streamError(stream, ErrorCode.PROTOCOL_ERROR, "END inside a fragmented message", events);
        return;
      }
      stream.state = after;
      this.streams.freeSlotIfDone(stream);
      events.push({ kind: "ended", streamId: sid });
      if (stream.state === "closed") this.finish(stream);
    }
  }

  private receiveFragment(stream: Stream, payload: Uint8Array, more: boolean, events: Event[]): void {
    const size = payload.length;
    if (stream.discarding) {
      stream.discarding = more;
      this.refill(this.session, size); // dropped unread
      return;
    }
    let body = payload;
    let early = 0;
    if (more || stream.partial) {
      const tooLarge = this.assembly.add(stream, payload);
      if (tooLarge !== undefined) {
        this.messageTooLarge(stream, tooLarge, events);
        return;
      }
      if (more) {
        // Credit incomplete fragments back now, within a connection-wide budget, so a
        // message larger than a window can finish.
        if (this.assembly.creditEarly(stream, size)) this.refill(stream, size);
        return;
      }
      [body, early] = this.assembly.complete(stream);
    }
    let message: Message;
    try {
      message = decodePayload(body);
    } catch (error) {
      if (!(error instanceof InvalidMessage)) throw error;
      this.assembly.settle(early);
      if (stream.id === 0) {
        this.refill(this.session, body.length - early);
        events.push({ kind: "invalid", streamId: 0, reason: error.message });
      } else {
        this.streamError(stream, ErrorCode.PROTOCOL_ERROR, error.message, events);
      }
      return;
    }
    stream.unacked += body.length;
    stream.early += early;
    this.held += body.length;
    events.push({ kind: "message", streamId: stream.id, message, size: body.length });
  }

  private messageTooLarge(stream: Stream, reason: string, events: Event[]): void {
    if (stream.id !== 0) {
      this.streamError(stream, ErrorCode.MESSAGE_TOO_LARGE, reason, events);
      return;
    }
    this.dropPartial(stream); // stream 0 cannot be cancelled: drop this message
    stream.discarding = true;
    events.push({ kind: "invalid", streamId: 0, reason });
  }

  private onCredit(sid: number, increment: number, events: Event[]): void {
    if (increment === 0) throw new ProtocolError(`CREDIT of 0 on stream ${sid}`);
    if (sid === 0) {
      this.flow.creditReceived(0, increment);
      this.wakeAll();
      events.push({ kind: "credit", streamId: 0, increment });
      return;
    }
    this.streams.checkKnown(sid);
    const stream = this.streams.get(sid);
    if (!stream) {
      if (!this.streams.recentlyClosed(sid)) this.guards.useless(`CREDIT for forgotten stream ${sid}`);
      return;
    }
    this.flow.creditReceived(sid, increment);
    this.wake(stream);
    events.push({ kind: "credit", streamId: sid, increment });
  }

  private onCancel(sid: number, rawCode: number, reason: string, events: Event[]): void {
    this.streams.checkKnown(sid);
    const stream = this.streams.get(sid);
    if (!stream) {
      if (!this.streams.recentlyClosed(sid)) this.guards.useless(`CANCEL for forgotten stream ${sid}`);
      return;
    }
    if (!stream.local) this.guards.cancel();
    const code = parseErrorCode(rawCode);
    this.reset(stream, code, reason, false);
    events.push({ kind: "cancelled", streamId: sid, code, reason, remote: true });
  }

  private onPing(opaque: number | bigint, ack: boolean, events: Event[]): void {
    if (ack) {
      const sent = this.pings.get(String(opaque));
      if (sent === undefined) {
        this.guards.useless("PING ACK for no PING of ours");
        return;
      }
      this.pings.delete(String(opaque));
      this.rtt = this.clock() - sent;
      events.push({ kind: "pingAck", opaque, rtt: this.rtt });
      return;
    }
    this.guards.ping();
    this.reply(this.pingFrame(opaque, true));
  }

  private onGoaway(lastStreamId: number, rawCode: number, reason: string, events: Event[]): void {
    const code = parseErrorCode(rawCode);
    if (code !== ErrorCode.NO_ERROR) {
      this.terminate(code, reason, true, events);
      return;
    }
    this.goawayReceived = true;
    if (this.state === "open") this.state = "goingAway";
    events.push({ kind: "goaway", lastStreamId, reason });
    for (const stream of [...this.streams.values()]) {
      if (!stream.local || stream.id <= lastStreamId) continue;
      this.reset(stream, ErrorCode.REFUSED_STREAM, "not processed", false);
      events.push({
        kind: "cancelled",
        streamId: stream.id,
        code: ErrorCode.REFUSED_STREAM,
        reason: "the peer went away before processing it (safe to retry)",
        remote: true,
      });
    }
  }

  // ------------------------------------------------------------------ internals

  private encode(message: Message): Uint8Array {
    const payload = encodePayload(message);
    if (payload.length > this.peerSettings.max_message_size) {
      throw new MessageTooLargeForPeer(
        `message of ${payload.length} bytes, the peer's max_message_size is ${this.peerSettings.max_message_size}`,
      );
    }
    return payload;
  }

  private checkOpen(): void {
    if (this.closed) throw new ConnectionClosedError("connection closed", this.errorCode ?? ErrorCode.NO_ERROR, this.closeCode);
  }

  private sendable(streamId: number, end: boolean): Stream {
    const stream = this.streams.get(streamId);
    if (!stream) throw new StreamStateError(`stream ${streamId} is not open`);
    if (!SENDING.has(stream.state)) {
      throw new StreamStateError(`cannot send${end ? " END" : ""} on stream ${streamId} (${stream.state})`);
    }
    return stream;
  }

  private ended(stream: Stream): void {
    stream.state = AFTER_SEND_END.get(stream.state) ?? stream.state;
    if (stream.state === "closed") this.finish(stream);
  }

  private push(stream: Stream, data: Uint8Array, end: boolean): void {
    this.scheduler.push(stream.id, data, end);
  }

  private wake(stream: Stream): void {
    this.scheduler.wake(stream.id);
  }

  private wakeAll(): void {
    this.scheduler.wakeAll();
  }

  /** Every DATA frame sendable now, one per stream per turn, within credit. */
  private popData(frames: Uint8Array[]): void {
    const spend = (sid: number, size: number): void => this.flow.consumeSend(sid, size);
    const credit = (sid: number): number => this.flow.credit(sid);
    for (const { streamId, flags, payload } of this.scheduler.popFrames(credit, spend, this.peerSettings.max_frame_size)) {
      frames.push(encodeFrame({ type: 2, streamId, flags, payload }));
      if (flags === Flag.END) {
        const stream = this.streams.get(streamId);
        if (stream && stream.state === "closed") this.finish(stream); // its END is on the wire at last
      }
    }
  }

  private grant(streamId: number, increment: number): boolean {
    if (!increment) return false;
    const position = this.position();
    const frame = position === undefined ? { type: 4 as const, streamId, increment } : { type: 4 as const, streamId, increment, received: position };
    this.immediate.push(encodeFrame(frame));
    return true;
  }

  /** Make `size` consumed bytes of `stream` due back (its window; stream 0: the connection's). */
  private refill(stream: Stream, size: number): boolean {
    const due = this.flow.acknowledgeReceived(stream, size);
    return due !== undefined && this.grant(...due);
  }

  /** Bytes nobody will consume: the connection window refilled at once. */
  private dropped(size: number): void {
    this.grant(0, this.flow.droppedReceived(size));
  }

  private reply(frame: Frame): void {
    this.guards.reply();
    this.immediate.push(encodeFrame(frame));
  }

  private dropPartial(stream: Stream): void {
    const withheld = this.assembly.drop(stream);
    if (stream.id === 0) this.refill(stream, withheld);
  }

  /** A stream leaves the table: reset, or closed with our END sent. */
  private finish(stream: Stream): void {
    if (stream.state === "closed" && this.scheduler.hasQueued(stream.id)) return; // its END is still queued
    this.streams.finish(stream);
  }

  private reset(stream: Stream, code: ErrorCode, reason: string, send: boolean): void {
    stream.state = "reset";
    if (send) this.immediate.push(encodeFrame({ type: 3, streamId: stream.id, code, reason }));
    this.scheduler.drop(stream.id);
    this.dropPartial(stream);
    this.assembly.settle(stream.early);
    this.held -= stream.unacked;
    stream.unacked = stream.early = 0;
    this.finish(stream);
  }

  private streamError(stream: Stream, code: ErrorCode, reason: string, events: Event[]): void {
    if (!stream.local) this.guards.cancel();
    this.reset(stream, code, reason, true);
    events.push({ kind: "cancelled", streamId: stream.id, code, reason, remote: false });
  }

  private fail(error: ProtocolError, closeCode?: number): Event {
    const events: Event[] = [];
    this.terminate(error.code, error.message, false, events, closeCode);
    return events[0]!;
  }

  private terminate(
    code: ErrorCode,
    reason: string,
    remote: boolean,
    events: Event[] | undefined,
    closeCode?: number,
    sessionLost = false,
  ): void {
    this.suspended = false;
    this.linkOut = [];
    this.replay?.clear();
    if (closeCode !== undefined && !remote) {
      this.immediate = []; // a close code of its own (1003) needs no GOAWAY
    } else if (!remote) {
      // The GOAWAY is the last frame we send (after our HELLO, if that has not gone out).
      this.immediate = this.helloSent ? [] : this.immediate.slice(0, 1);
      this.immediate.push(encodeFrame({ type: 6, lastStreamId: this.streams.highestRemote, code, reason }));
    } else {
      this.immediate = [];
    }
    this.state = "closed";
    this.errorCode = code;
    this.closeCode = closeCode ?? closeCodeFor(code);
    this.scheduler.dropAll(); // nothing queued is sent now, stream 0's too
    const terminated: Event = { kind: "terminated", code, reason, lastStreamId: this.streams.highestRemote, remote, closeCode: this.closeCode };
    if (sessionLost) terminated.sessionLost = true;
    events?.push(terminated);
  }
}

/** Join frames into as few WebSocket messages as fit under `limit` bytes each. */
function coalesce(frames: Uint8Array[], limit: number): Uint8Array[] {
  if (frames.length <= 1) return frames;
  const messages: Uint8Array[] = [];
  let batch: Uint8Array[] = [];
  let size = 0;
  for (const frame of frames) {
    if (batch.length && size + frame.length > limit) {
      messages.push(concat(batch, size));
      batch = [];
      size = 0;
    }
    batch.push(frame);
    size += frame.length;
  }
  if (batch.length) messages.push(batch.length === 1 ? batch[0]! : concat(batch, size));
  return messages;
}
