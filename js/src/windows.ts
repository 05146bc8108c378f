/**
 * Credit windows (docs/protocol.md section 6). A receive window counts what the peer may
 * still send and what is due back to it; the grant goes out once a quarter of the window
 * is due. Send credit is a plain number on each stream and on the connection.
 */

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
