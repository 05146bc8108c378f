/**
 * Sending in turn (docs/protocol.md section 6): per-stream queues of encoded messages and a
 * round-robin rotation that takes one frame per stream per turn, within credit. The same
 * scheduler as the Python core's `mcp_ws/protocol/scheduler.py`.
 */
import { Flag } from "./constants.js";

class Chunk {
  offset = 0;
  constructor(
    readonly data: Uint8Array,
    readonly end: boolean,
  ) {}
}

/** A DATA frame to send: its stream, flags and payload. */
export interface OutgoingFrame {
  streamId: number;
  flags: number;
  payload: Uint8Array;
}

/** Per-stream FIFO queues of encoded messages and a round-robin rotation. */
export class Scheduler {
  private readonly queues = new Map<number, Chunk[]>();
  private readonly bufferedBy = new Map<number, number>();
  private total = 0;
  private readonly ready: number[] = []; // streams with data to send, in turn
  private readonly inReady = new Set<number>();

  /** Queue `data` on a stream; `end` sends END after it. */
  push(streamId: number, data: Uint8Array, end: boolean): void {
    let queue = this.queues.get(streamId);
    if (!queue) this.queues.set(streamId, (queue = []));
    queue.push(new Chunk(data, end));
    this.bufferedBy.set(streamId, (this.bufferedBy.get(streamId) ?? 0) + data.length);
    this.total += data.length;
    this.wake(streamId);
  }

  /** Put a stream with queued data back in the rotation (its credit may have grown). */
  wake(streamId: number): void {
    if (this.queues.has(streamId) && !this.inReady.has(streamId)) {
      this.ready.push(streamId);
      this.inReady.add(streamId);
    }
  }

  /** Every stream with queued data back in the rotation (the connection's credit grew). */
  wakeAll(): void {
    for (const streamId of this.queues.keys()) this.wake(streamId);
  }

  /** Discard everything queued on a stream (it was cancelled); returns the bytes. */
  drop(streamId: number): number {
    this.queues.delete(streamId);
    this.inReady.delete(streamId);
    const dropped = this.bufferedBy.get(streamId) ?? 0;
    this.bufferedBy.delete(streamId);
    this.total -= dropped;
    return dropped;
  }

  /** Discard every queue (the connection ended). */
  dropAll(): void {
    this.queues.clear();
    this.bufferedBy.clear();
    this.total = 0;
    this.ready.length = 0;
    this.inReady.clear();
  }

  /** Bytes queued and not yet framed, for one stream or for all. */
  buffered(streamId?: number): number {
    return streamId === undefined ? this.total : (this.bufferedBy.get(streamId) ?? 0);
  }

  /** Whether a stream has anything queued (an END counts). */
  hasQueued(streamId: number): boolean {
    return this.queues.has(streamId);
  }

  /** Whether any stream may have a frame to send. */
  hasPending(): boolean {
    return this.ready.length > 0;
  }

  /**
   * Every frame sendable now, one per stream per turn: `credit(streamId)` says how many
   * bytes a stream may send (stream 0: the connection's credit), `spend` charges them.
   */
  popFrames(credit: (streamId: number) => number, spend: (streamId: number, size: number) => void, maxFrame: number): OutgoingFrame[] {
    const frames: OutgoingFrame[] = [];
    const ready = this.ready;
    while (ready.length) {
      const sid = ready.shift()!;
      const queue = this.queues.get(sid);
      const chunk = queue?.[0];
      if (!queue || !chunk) {
        this.inReady.delete(sid);
        continue;
      }
      const remaining = chunk.data.length - chunk.offset;
      const size = Math.min(remaining, maxFrame, credit(sid));
      if (size === 0 && remaining) {
        // Blocked. If it is the connection window, nobody can send: stop.
        this.inReady.delete(sid);
        if (credit(0) === 0) {
          ready.unshift(sid);
          this.inReady.add(sid);
          break;
        }
        continue;
      }
      const payload = chunk.data.subarray(chunk.offset, chunk.offset + size);
      chunk.offset += size;
      spend(sid, size);
      this.bufferedBy.set(sid, this.bufferedBy.get(sid)! - size);
      this.total -= size;
      let flags: number = Flag.MORE;
      if (chunk.offset >= chunk.data.length) {
        flags = chunk.end ? Flag.END : Flag.NONE;
        queue.shift();
      }
      frames.push({ streamId: sid, flags, payload });
      if (queue.length) ready.push(sid);
      else {
        this.queues.delete(sid);
        this.bufferedBy.delete(sid);
        this.inReady.delete(sid);
      }
    }
    return frames;
  }
}
