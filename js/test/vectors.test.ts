// The golden vectors in vectors/frames.json, which the Python tests check too: the two
// codecs cannot drift apart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { errorName } from "../src/constants.js";
import { ProtocolError } from "../src/errors.js";
import { type Frame, decodeMessage, decodePayload, encodeFrame, encodePayload } from "../src/frames.js";

interface Vectors {
  good: { frame: Record<string, unknown>; hex: string }[];
  bad: { name: string; hex: string; max_frame_size: number; error: string }[];
  messages: { message: Record<string, unknown>; hex: string }[];
}

const vectors = JSON.parse(
  readFileSync(new URL("../../../vectors/frames.json", import.meta.url), "utf8"),
) as Vectors;

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "hex"));

/** A frame from its language-neutral description. */
function frameOf(spec: Record<string, unknown>): Frame {
  const n = (key: string): number => spec[key] as number;
  switch (spec["type"]) {
    case "HELLO":
      return { type: 0, settings: spec["settings"] as Record<string, unknown> };
    case "OPEN":
    case "DATA":
      return {
        type: spec["type"] === "OPEN" ? 1 : 2,
        streamId: n("stream_id"),
        flags: n("flags"),
        payload: bytes(spec["payload_hex"] as string),
      };
    case "CANCEL":
      return { type: 3, streamId: n("stream_id"), code: n("code"), reason: spec["reason"] as string };
    case "CREDIT":
      return { type: 4, streamId: n("stream_id"), increment: n("increment") };
    case "PING": {
      const big = BigInt(spec["opaque"] as string);
      return { type: 5, opaque: big > BigInt(Number.MAX_SAFE_INTEGER) ? big : Number(big), ack: spec["ack"] as boolean };
    }
    case "GOAWAY":
      return { type: 6, lastStreamId: n("last_stream_id"), code: n("code"), reason: spec["reason"] as string };
    default:
      return { type: "unknown", frameType: n("frame_type"), streamId: n("stream_id"), flags: n("flags") };
  }
}

test("every good vector encodes to its bytes and decodes back", () => {
  assert.ok(vectors.good.length >= 18);
  for (const vector of vectors.good) {
    const frame = frameOf(vector.frame);
    assert.equal(hex(encodeFrame(frame)), vector.hex, JSON.stringify(vector.frame));
    assert.deepEqual(decodeMessage(bytes(vector.hex), 65536), [frame]);
  }
});

test("every frame type has a vector", () => {
  const types = new Set(vectors.good.map((v) => v.frame["type"]));
  for (const name of ["HELLO", "OPEN", "DATA", "CANCEL", "CREDIT", "PING", "GOAWAY", "UNKNOWN"]) {
    assert.ok(types.has(name), name);
  }
});

test("every bad vector fails with its documented error", () => {
  for (const vector of vectors.bad) {
    assert.throws(
      () => decodeMessage(bytes(vector.hex), vector.max_frame_size),
      (error: unknown) => error instanceof ProtocolError && errorName(error.code) === vector.error,
      vector.name,
    );
  }
});

test("message vectors encode to their bytes and decode back", () => {
  for (const vector of vectors.messages) {
    assert.equal(hex(encodePayload(vector.message)), vector.hex);
    assert.deepEqual(decodePayload(bytes(vector.hex)), vector.message);
  }
});
