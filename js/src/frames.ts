/**
 * Frames and messages as bytes (docs/protocol.md sections 2 and 3), with decoding bounded
 * by the input: every length a peer declares is checked against the bytes that arrived,
 * so a declared 4 GiB string in a few bytes fails without allocating.
 */
import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";

import {
  FrameType,
  MAX_REASON_BYTES,
  MAX_STREAM_ID,
  MAX_WINDOW,
  MESSAGE_OVERHEAD,
  truncateUtf8,
} from "./constants.js";
import { ProtocolError } from "./errors.js";

export type Frame =
  | { type: 0; settings: Map<unknown, unknown> | Record<string, unknown> }
  | { type: 1 | 2; streamId: number; flags: number; payload: Uint8Array }
  | { type: 3; streamId: number; code: number; reason: string }
  | { type: 4; streamId: number; increment: number; received?: unknown }
  | { type: 5; opaque: number | bigint; ack: boolean; received?: unknown }
  | { type: 6; lastStreamId: number; code: number; reason: string }
  | { type: "unknown"; frameType: number; streamId: number; flags: number };

/** A JSON-RPC message as this package handles it (a plain JSON-compatible object). */
export type Message = Record<string, unknown>;

const frameEncoder = new Encoder({ useBigInt64: true });
const payloadEncoder = new Encoder({ ignoreUndefined: true });

/** The MessagePack bytes of one frame. */
export function encodeFrame(frame: Frame): Uint8Array {
  switch (frame.type) {
    case FrameType.HELLO:
      return frameEncoder.encode([0, 0, 0, frame.settings]);
    case FrameType.OPEN:
    case FrameType.DATA:
      return frameEncoder.encode([frame.type, frame.streamId, frame.flags, frame.payload]);
    case FrameType.CANCEL:
      return frameEncoder.encode([3, frame.streamId, 0, frame.code, truncateUtf8(frame.reason, MAX_REASON_BYTES)]);
    case FrameType.CREDIT:
      return frameEncoder.encode(
        frame.received === undefined
          ? [4, frame.streamId, 0, frame.increment]
          : [4, frame.streamId, 0, frame.increment, frame.received],
      );
    case FrameType.PING:
      return frameEncoder.encode(
        frame.received === undefined
          ? [5, 0, frame.ack ? 1 : 0, frame.opaque]
          : [5, 0, frame.ack ? 1 : 0, frame.opaque, frame.received],
      );
    case FrameType.GOAWAY:
      return frameEncoder.encode([6, 0, 0, frame.lastStreamId, frame.code, truncateUtf8(frame.reason, MAX_REASON_BYTES)]);
    default:
      return frameEncoder.encode([frame.frameType, frame.streamId, frame.flags]);
  }
}

function int(value: unknown, what: string, lo: number, hi: number): number {
  const n = typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < lo || n > hi) {
    throw new ProtocolError(`${what} must be an integer in ${lo}..${hi}, got ${String(value)}`);
  }
  return n;
}

const MAX_U64 = 2n ** 64n - 1n;

function opaque(value: unknown): number | bigint {
  if (typeof value === "bigint" && value >= 0n && value <= MAX_U64) return value;
  return int(value, "PING opaque", 0, Number.MAX_SAFE_INTEGER);
}

function need(raw: unknown[], n: number, name: string): void {
  if (raw.length < n) throw new ProtocolError(`${name} frame needs ${n} fields, got ${raw.length}`);
}

function payloadField(raw: unknown[], name: string, maxFrameSize: number): Uint8Array {
  const payload = raw[3];
  if (!(payload instanceof Uint8Array)) throw new ProtocolError(`${name} payload must be MessagePack bin`);
  if (payload.length > maxFrameSize) {
    throw new ProtocolError(
      `${name} payload of ${payload.length} bytes exceeds max_frame_size ${maxFrameSize}`,
      5, // FRAME_SIZE_ERROR
    );
  }
  return payload;
}

function dataFlags(flags: number, name: string): number {
  if ((flags & 3) === 3) throw new ProtocolError(`${name} frame sets both END and MORE`);
  return flags & 3;
}

function reasonField(value: unknown): string {
  if (typeof value !== "string") throw new ProtocolError("reason must be a string");
  return truncateUtf8(value, MAX_REASON_BYTES);
}

/** One frame from its MessagePack value; throws `ProtocolError` for a malformed one. */
export function decodeFrame(raw: unknown, maxFrameSize: number): Frame {
  if (!Array.isArray(raw) || raw.length < 3) {
    throw new ProtocolError("a frame must be a MessagePack array of at least 3 fields");
  }
  const type = raw[0];
  if (typeof type !== "number" && typeof type !== "bigint") throw new ProtocolError("frame type must be an integer");
  const streamId = int(raw[1], "stream_id", 0, MAX_STREAM_ID);
  const flags = int(raw[2], "flags", 0, 0xff);
  switch (type) {
    case FrameType.DATA:
      need(raw, 4, "DATA");
      return { type: 2, streamId, flags: dataFlags(flags, "DATA"), payload: payloadField(raw, "DATA", maxFrameSize) };
    case FrameType.OPEN:
      need(raw, 4, "OPEN");
      if (streamId === 0) throw new ProtocolError("OPEN on stream 0");
      return { type: 1, streamId, flags: dataFlags(flags, "OPEN"), payload: payloadField(raw, "OPEN", maxFrameSize) };
    case FrameType.CREDIT: {
      need(raw, 4, "CREDIT");
      const increment = int(raw[3], "CREDIT increment", 0, MAX_WINDOW);
      return raw.length > 4 ? { type: 4, streamId, increment, received: raw[4] } : { type: 4, streamId, increment };
    }
    case FrameType.CANCEL:
      need(raw, 5, "CANCEL");
      if (streamId === 0) throw new ProtocolError("CANCEL on stream 0");
      return { type: 3, streamId, code: codeField(raw[3], "CANCEL code"), reason: reasonField(raw[4]) };
    case FrameType.PING:
      need(raw, 4, "PING");
      if (streamId !== 0) throw new ProtocolError("PING on a stream other than 0");
      {
        const ping = { type: 5 as const, opaque: opaque(raw[3]), ack: (flags & 1) === 1 };
        return raw.length > 4 ? { ...ping, received: raw[4] } : ping;
      }
    case FrameType.GOAWAY:
      need(raw, 6, "GOAWAY");
      if (streamId !== 0) throw new ProtocolError("GOAWAY on a stream other than 0");
      return {
        type: 6,
        lastStreamId: int(raw[3], "GOAWAY last_sid", 0, MAX_STREAM_ID),
        code: codeField(raw[4], "GOAWAY code"),
        reason: reasonField(raw[5]),
      };
    case FrameType.HELLO: {
      need(raw, 4, "HELLO");
      if (streamId !== 0) throw new ProtocolError("HELLO on a stream other than 0");
      const settings = raw[3];
      if (typeof settings !== "object" || settings === null || Array.isArray(settings) || settings instanceof Uint8Array) {
        throw new ProtocolError("HELLO settings must be a map");
      }
      return { type: 0, settings: settings as Record<string, unknown> };
    }
    default:
      return { type: "unknown", frameType: int(type, "frame type", -(2 ** 53), 2 ** 53), streamId, flags };
  }
}

function stringKey(key: unknown): string {
  if (typeof key !== "string") throw new ProtocolError("map keys must be strings");
  return key;
}

function codeField(value: unknown, what: string): number {
  // Codes go up to 2**64-1 on the wire; any this side cannot hold is unknown anyway.
  if (typeof value === "bigint" && value >= 0n && value <= MAX_U64) return -1;
  return int(value, what, 0, Number.MAX_SAFE_INTEGER);
}

function boundedDecoder(size: number, useBigInt64: boolean): Decoder {
  return new Decoder({
    useBigInt64,
    maxStrLength: size,
    maxBinLength: size,
    maxArrayLength: size,
    maxMapLength: size,
    maxExtLength: 0,
    mapKeyConverter: stringKey,
  });
}

/** Nesting depth decoders accept in a message (as the Python side). */
export const MAX_DEPTH = 1024;

/** Whether `value` holds only JSON-like values: no extension types, no deeper than 1024. */
function plain(value: unknown): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (depth > MAX_DEPTH) return false;
    if (v instanceof ExtData || v instanceof Date) return false;
    if (Array.isArray(v)) for (const item of v) stack.push([item, depth + 1]);
    else if (v !== null && typeof v === "object" && !(v instanceof Uint8Array)) {
      for (const item of Object.values(v)) stack.push([item, depth + 1]);
    }
  }
  return true;
}

/**
 * The MessagePack values of the frames in one WebSocket message, not yet checked as frames
 * (`decodeFrame` checks each, as the connection handles it). Throws `ProtocolError`
 * (FRAME_SIZE_ERROR for the message's size) for MessagePack that is malformed, truncated,
 * holds extension types or nests too deep: then no frame of the message is handled, as in
 * the Python core's `unpack_message`.
 */
export function unpackMessage(data: Uint8Array, maxFrameSize: number): unknown[] {
  if (data.length > maxFrameSize + MESSAGE_OVERHEAD) {
    throw new ProtocolError(
      `message of ${data.length} bytes exceeds max_frame_size + ${MESSAGE_OVERHEAD}`,
      5,
    );
  }
  if (data.length === 0) throw new ProtocolError("empty WebSocket message");
  const values: unknown[] = [];
  try {
    for (const raw of boundedDecoder(data.length, true).decodeMulti(data)) {
      if (!plain(raw)) throw new ProtocolError("MessagePack extension types are not allowed");
      values.push(raw);
    }
  } catch (error) {
    if (error instanceof ProtocolError) throw error;
    throw new ProtocolError(`malformed MessagePack: ${(error as Error).message}`);
  }
  return values;
}

/**
 * Decode every frame of one WebSocket binary message. Throws `ProtocolError` (code
 * FRAME_SIZE_ERROR for sizes) for anything but a sequence of well-formed frames.
 */
export function decodeMessage(data: Uint8Array, maxFrameSize: number): Frame[] {
  return unpackMessage(data, maxFrameSize).map((raw) => decodeFrame(raw, maxFrameSize));
}

/** The MessagePack bytes of one JSON-RPC message. */
export function encodePayload(message: unknown): Uint8Array {
  return payloadEncoder.encode(message);
}

/** A reassembled payload that is not a JSON-RPC 2.0 message (a stream error). */
export class InvalidMessage extends Error {
  override name = "InvalidMessage";
}

/** Decode one reassembled payload and check that it is a JSON-RPC 2.0 message. */
export function decodePayload(payload: Uint8Array): Message {
  let obj: unknown;
  try {
    obj = boundedDecoder(payload.length, false).decode(payload);
  } catch (error) {
    throw new InvalidMessage(`payload is not valid MessagePack: ${(error as Error).message}`);
  }
  if (!plain(obj)) throw new InvalidMessage("payload holds extension types or nests too deep");
  if (!isJsonRpc(obj)) throw new InvalidMessage("payload is not a JSON-RPC 2.0 message");
  return obj;
}

/** A request, notification, result or error response of JSON-RPC 2.0. */
export function isJsonRpc(obj: unknown): obj is Message {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj) || obj instanceof Uint8Array) return false;
  const m = obj as Message;
  if (m["jsonrpc"] !== "2.0") return false;
  if ("method" in m) return typeof m["method"] === "string";
  return "id" in m && ("result" in m || "error" in m);
}
