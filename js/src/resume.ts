/**
 * Resume (docs/protocol.md section 9): positions, the replay buffer, the HELLO's map.
 * The twin of the Python core's `mcp_ws/protocol/resume.py`.
 *
 * When both HELLOs carry a `resume` map, every frame after HELLO is numbered (from 1,
 * each direction on its own), each side tells the other how many of its frames it has
 * received (on CREDIT and PING, and on a bare `CREDIT(0, 0, received)` every `ACK_EVERY`
 * frames), and keeps the frames the peer has not acknowledged yet.
 */
import { ProtocolError } from "./errors.js";

/** Frames received without telling the peer our position, at most. */
export const ACK_EVERY = 64;
/** Frames kept for a peer that does not acknowledge them; past it resume is given up. */
export const MAX_UNACKED_FRAMES = 16384;
/** Bytes kept for a peer, at most, whatever connection window it declared. */
export const MAX_UNACKED_BYTES = 64 * 1024 * 1024;
/** Longest token or node name a HELLO may carry (characters). */
export const MAX_TOKEN_LENGTH = 256;

/** The `resume` map of one HELLO (see the Python `ResumeHello`). */
export interface ResumeHello {
  token?: string;
  received?: number;
  grace?: number;
  node?: string;
  /** Which of the server's worker processes holds the connection (`mcp-ws serve --workers`). */
  worker?: string;
  refused?: string;
}

function field(raw: Map<unknown, unknown> | Record<string, unknown>, key: string): unknown {
  return raw instanceof Map ? raw.get(key) : raw[key];
}

function text(raw: Map<unknown, unknown> | Record<string, unknown>, key: string): string | undefined {
  const value = field(raw, key);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.length === 0 || value.length > MAX_TOKEN_LENGTH) {
    throw new ProtocolError(`bad HELLO: resume ${key} must be a string of 1..${MAX_TOKEN_LENGTH} characters`);
  }
  return value;
}

function count(raw: Map<unknown, unknown> | Record<string, unknown>, key: string, highest: number): number | undefined {
  const value = field(raw, key);
  if (value === undefined || value === null) return undefined;
  const n = typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > highest) {
    throw new ProtocolError(`bad HELLO: resume ${key} must be an integer in 0..${highest}`);
  }
  return n;
}

/** The HELLO's `resume` map, or undefined when it has none; malformed: PROTOCOL_ERROR. */
export function resumeFromSettings(settings: Map<unknown, unknown> | Record<string, unknown>): ResumeHello | undefined {
  const raw = field(settings, "resume");
  if (raw === undefined || raw === null) return undefined;
  const isMap = raw instanceof Map || (typeof raw === "object" && !Array.isArray(raw) && !(raw instanceof Uint8Array));
  if (!isMap) throw new ProtocolError("bad HELLO: resume must be a map");
  const map = raw as Map<unknown, unknown> | Record<string, unknown>;
  const hello: ResumeHello = {};
  const token = text(map, "token");
  const node = text(map, "node");
  const refused = text(map, "refused");
  const worker = text(map, "worker");
  const received = count(map, "received", Number.MAX_SAFE_INTEGER);
  const grace = count(map, "grace", 86400);
  if (token !== undefined) hello.token = token;
  if (received !== undefined) hello.received = received;
  if (grace !== undefined) hello.grace = grace;
  if (node !== undefined) hello.node = node;
  if (worker !== undefined) hello.worker = worker;
  if (refused !== undefined) hello.refused = refused;
  return hello;
}

/** The map to put under `resume` in a HELLO. */
export function resumeToWire(hello: ResumeHello): Record<string, unknown> {
  const wire: Record<string, unknown> = {};
  for (const key of ["token", "received", "grace", "node", "worker", "refused"] as const) {
    if (hello[key] !== undefined) wire[key] = hello[key];
  }
  return wire;
}

/** The frames we sent that the peer has not acknowledged, numbered from 1. */
export class ReplayBuffer {
  private frames: Uint8Array[] = [];
  private head = 0; // frames before it are acknowledged (compacted now and then)
  /** Frames numbered so far (the number of the last one). */
  sent = 0;
  /** The peer's position: frames it says it has received. */
  acknowledged = 0;
  /** Bytes of the frames kept. */
  bytes = 0;

  get length(): number {
    return this.frames.length - this.head;
  }

  /** Number `frames` (about to be sent) and keep them. */
  add(frames: Uint8Array[]): void {
    for (const frame of frames) {
      this.frames.push(frame);
      this.bytes += frame.length;
    }
    this.sent += frames.length;
  }

  /**
   * The peer has received frames 1..`position`. Beyond what we sent: PROTOCOL_ERROR; older
   * than we know: ignored (a frame queued before a resume carries the position of then).
   */
  acknowledge(position: number): void {
    if (position > this.sent) throw new ProtocolError(`acknowledged position ${position}, only ${this.sent} sent`);
    if (position <= this.acknowledged) return;
    for (let i = this.acknowledged; i < position; i++) {
      this.bytes -= this.frames[this.head]!.length;
      this.head += 1;
    }
    this.acknowledged = position;
    if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
  }

  /** The frames to send again on a new link, in order. */
  unacknowledged(): Uint8Array[] {
    return this.frames.slice(this.head);
  }

  /** Forget every frame (resume given up). */
  clear(): void {
    this.frames = [];
    this.head = 0;
    this.bytes = 0;
  }
}
