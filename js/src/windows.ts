/**
 * Byte-credit accounting for both directions of one connection (docs/protocol.md
 * section 6), the rules of the Python core's `mcp_ws/protocol/windows.py` in one place.
 *
 * Outbound (what we may send): each stream's `sendCredit` plus the connection window; a
 * frame carries at most `credit(sid)` bytes. Inbound (what the peer may send): a stream's
 * window is refilled as the application **consumes** its messages; the connection window
 * as bytes for streams other than 0 are **received**; stream 0 has no window of its own,
 * its bytes refill the connection window when consumed. Grants are batched: one goes out
 * once a quarter of its window is due.
 */
import { ErrorCode, MAX_WINDOW } from "./constants.js";
import { ProtocolError } from "./errors.js";
import type { Stream, StreamTable } from "./streams.js";

/** A receive window: what the peer may still send, and what is due back to it. */
export class ReceiveWindow {
  remaining: number;
  pending = 0;
  constructor(readonly size: number) {
    this.remaining = size;
  }

  /** Make `size` bytes due back; the grant once a quarter of the window is due (else 0). */
  refill(size: number): number {
    if (size <= 0) return 0;
    this.pending += size;
    if (this.pending < this.size / 4) return 0;
    const increment = this.pending;
    this.pending = 0;
    this.remaining += increment;
    return increment;
  }
}

/** A CREDIT to send: the stream (0: the connection) and its increment. */
export type Grant = [streamId: number, increment: number];

function flowError(message: string): ProtocolError {
  return new ProtocolError(message, ErrorCode.FLOW_CONTROL_ERROR);
}

/** Both directions' windows of one connection: the connection's here, each stream's on it. */
export class FlowControl {
  private sendConnection: number;
  private readonly recvConnection: ReceiveWindow;

  constructor(
    private readonly streams: StreamTable,
    peerConnectionWindow: number,
    localConnectionWindow: number,
  ) {
    this.sendConnection = peerConnectionWindow;
    this.recvConnection = new ReceiveWindow(localConnectionWindow);
  }

  /** Bytes the connection window still allows us to send. */
  get connectionCredit(): number {
    return this.sendConnection;
  }

  /** Bytes stream `sid` may send now, queued data not counted (stream 0: the connection's). */
  credit(sid: number): number {
    if (sid === 0) return this.sendConnection;
    const stream = this.streams.get(sid);
    return stream ? Math.min(stream.sendCredit, this.sendConnection) : 0;
  }

  /** Spend credit for a payload we are sending. */
  consumeSend(sid: number, size: number): void {
    this.sendConnection -= size;
    if (sid) this.streams.get(sid)!.sendCredit -= size;
  }

  /** The peer's HELLO replaced the windows assumed before it: add the differences. */
  peerSettingsChanged(initialWindowDelta: number, connectionWindowDelta: number): void {
    for (const stream of this.streams.values()) stream.sendCredit += initialWindowDelta;
    this.sendConnection += connectionWindowDelta;
  }

  /** A CREDIT from the peer: false when its stream is gone (the CREDIT is then ignored). */
  creditReceived(sid: number, increment: number): boolean {
    if (sid === 0) {
      if (this.sendConnection + increment > MAX_WINDOW) throw flowError("connection window above 2**31-1");
      this.sendConnection += increment;
      return true;
    }
    const stream = this.streams.get(sid);
    if (!stream) return false;
    if (stream.sendCredit + increment > MAX_WINDOW) throw flowError(`stream ${sid} window above 2**31-1`);
    stream.sendCredit += increment;
    return true;
  }

  /**
   * `size` bytes arrived for `stream`: charged to its window and the connection's. The
   * connection grant due for them (bytes of streams other than 0 refill it at once), or 0.
   */
  dataReceived(stream: Stream, size: number): number {
    this.chargeConnection(size);
    if (stream.id === 0) return 0;
    if (size > stream.recv.remaining) {
      throw flowError(`${size} bytes on stream ${stream.id} with ${stream.recv.remaining} of credit`);
    }
    stream.recv.remaining -= size;
    return this.recvConnection.refill(size);
  }

  /** Bytes that arrived for nobody (a finished or refused stream): charged, and due back at once. */
  droppedReceived(size: number): number {
    this.chargeConnection(size);
    return this.recvConnection.refill(size);
  }

  /**
   * `size` bytes of `stream` were consumed (or will never be): the grant due, if any —
   * the stream's own window, or the connection's for stream 0. Nothing for a finished
   * stream, on which nothing more will arrive.
   */
  acknowledgeReceived(stream: Stream, size: number): Grant | undefined {
    if (stream.id === 0) {
      const increment = this.recvConnection.refill(size);
      return increment ? [0, increment] : undefined;
    }
    if (!this.streams.live.has(stream.id)) return undefined;
    const increment = stream.recv.refill(size);
    return increment ? [stream.id, increment] : undefined;
  }

  private chargeConnection(size: number): void {
    if (size > this.recvConnection.remaining) {
      throw flowError(`${size} bytes received with ${this.recvConnection.remaining} of connection credit`);
    }
    this.recvConnection.remaining -= size;
  }
}
