/**
 * The abuse limits of a connection (docs/protocol.md section 8): local choices, not wire
 * settings, and the guards that count what a peer can make us do for free. The same
 * limits and guards as the Python core's `mcp_ws/protocol/limits.py`.
 */
import { ErrorCode } from "./constants.js";
import { ProtocolError } from "./errors.js";

/** Abuse limits and timers: local choices, not wire settings. */
export interface Limits {
  cancelRate: number;
  cancelBurst: number;
  pingRate: number;
  pingBurst: number;
  uselessFrameRate: number;
  uselessFrameBurst: number;
  maxQueuedControl: number;
  /** Seconds to wait for the peer's HELLO. */
  helloTimeout: number;
  recentlyClosed: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  cancelRate: 200,
  cancelBurst: 500,
  pingRate: 10,
  pingBurst: 50,
  uselessFrameRate: 100,
  uselessFrameBurst: 500,
  maxQueuedControl: 1000,
  helloTimeout: 10,
  recentlyClosed: 1024,
});

/** `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private last: number,
  ) {
    this.tokens = burst;
  }

  /** Take a token at time `now`; false when there is none. */
  take(now: number): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
      this.last = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

function calm(message: string): ProtocolError {
  return new ProtocolError(message, ErrorCode.ENHANCE_YOUR_CALM);
}

/**
 * The abuse guards of one connection. Each check throws a `ProtocolError` with
 * ENHANCE_YOUR_CALM (the connection then ends) once the peer crosses the limit it counts.
 */
export class Guards {
  private readonly cancels: TokenBucket;
  private readonly pings: TokenBucket;
  private readonly uselessFrames: TokenBucket;
  private replies = 0;

  constructor(
    private readonly limits: Limits,
    private readonly clock: () => number,
  ) {
    const now = clock();
    this.cancels = new TokenBucket(limits.cancelRate, limits.cancelBurst, now);
    this.pings = new TokenBucket(limits.pingRate, limits.pingBurst, now);
    this.uselessFrames = new TokenBucket(limits.uselessFrameRate, limits.uselessFrameBurst, now);
  }

  /** A stream the peer opened was cancelled or refused before it finished. */
  cancel(): void {
    if (!this.cancels.take(this.clock())) throw calm("streams opened and cancelled too fast");
  }

  /** The peer sent a PING that needs an answer. */
  ping(): void {
    if (!this.pings.take(this.clock())) throw calm("PING flood");
  }

  /** The peer sent a frame that does nothing (`what` says which). */
  useless(what: string): void {
    if (!this.uselessFrames.take(this.clock())) throw calm(`flood of useless frames (${what})`);
  }

  /** A control reply was queued for the peer (they count until `repliesSent`). */
  reply(): void {
    this.replies += 1;
    if (this.replies > this.limits.maxQueuedControl) {
      throw calm("too many control replies queued for a peer that does not read");
    }
  }

  /** Every queued reply went to the writer. */
  repliesSent(): void {
    this.replies = 0;
  }
}
