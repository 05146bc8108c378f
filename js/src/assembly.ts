/**
 * Fragments back into messages (docs/protocol.md sections 3 and 6), as the Python core's
 * `mcp_ws/protocol/assembly.py`: each stream buffers the fragments of its message; the
 * connection-wide budget (4 x max_message_size) bounds what all streams buffer, and what
 * is credited back early so that a message larger than a window can finish.
 */
import type { Stream } from "./streams.js";

/** Join byte arrays of `size` bytes in all. */
export function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The reassembly of a connection's incomplete messages, within one budget. */
export class MessageAssembler {
  private bufferedBytes = 0; // fragments held, all streams
  private earlyBytes = 0; // bytes credited back before they were consumed, all streams

  constructor(
    private readonly maxMessageSize: number,
    private readonly budget: number,
  ) {}

  /** Bytes of incomplete messages held now. */
  get buffered(): number {
    return this.bufferedBytes;
  }

  /**
   * Buffer a fragment of `stream`'s message. Returns why the message must be dropped
   * (above `max_message_size`, or the budget exhausted), or undefined.
   */
  add(stream: Stream, fragment: Uint8Array): string | undefined {
    (stream.partial ??= []).push(fragment);
    stream.partialSize += fragment.length;
    this.bufferedBytes += fragment.length;
    if (stream.partialSize > this.maxMessageSize) return "message above max_message_size";
    if (this.bufferedBytes > this.budget) return "reassembly budget exhausted";
    return undefined;
  }

  /**
   * Whether `size` bytes of an incomplete message may be credited back now: yes within
   * the budget (they count as early), otherwise they wait for consumption (withheld).
   */
  creditEarly(stream: Stream, size: number): boolean {
    if (this.earlyBytes + size <= this.budget) {
      stream.partialEarly += size;
      this.earlyBytes += size;
      return true;
    }
    stream.partialWithheld += size;
    return false;
  }

  /** The whole message of `stream`, and how many of its bytes were credited early. */
  complete(stream: Stream): [Uint8Array, number] {
    const body = concat(stream.partial ?? [], stream.partialSize);
    const early = stream.partialEarly;
    this.bufferedBytes -= stream.partialSize;
    stream.partial = undefined;
    stream.partialSize = stream.partialEarly = stream.partialWithheld = 0;
    return [body, early];
  }

  /** Forget `stream`'s fragments; returns the bytes that were withheld (never credited). */
  drop(stream: Stream): number {
    if (!stream.partial) return 0;
    this.bufferedBytes -= stream.partialSize;
    this.earlyBytes -= stream.partialEarly;
    const withheld = stream.partialWithheld;
    stream.partial = undefined;
    stream.partialSize = stream.partialEarly = stream.partialWithheld = 0;
    return withheld;
  }

  /** `early` bytes credited ahead of consumption were consumed or dropped. */
  settle(early: number): void {
    this.earlyBytes -= early;
  }
}
