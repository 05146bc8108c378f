/**
 * Streams (docs/protocol.md section 5): one `Stream` per live stream, and the
 * `StreamTable` of a connection. The same bookkeeping as the Python core's
 * `mcp_ws/protocol/streams.py`.
 */
import { ProtocolError } from "./errors.js";
import type { StreamState } from "./state.js";
import { ReceiveWindow } from "./windows.js";

/** One stream: its state, its windows and what arrived on it. */
export class Stream {
  state: StreamState = "open";
  /** Fragments of the message being reassembled. */
  partial: Uint8Array[] | undefined;
  partialSize = 0;
  partialEarly = 0; // of those, bytes credited back to the stream already
  partialWithheld = 0; // ... and bytes not credited back yet
  discarding = false; // stream 0: dropping the rest of an oversized message
  unacked = 0; // delivered bytes the application has not acknowledged
  early = 0; // of those, bytes credited back before they were consumed
  sendCredit: number;
  readonly recv: ReceiveWindow;
  constructor(
    readonly id: number,
    readonly local: boolean,
    sendCredit: number,
    recvWindow: number,
  ) {
    this.sendCredit = sendCredit;
    this.recv = new ReceiveWindow(recvWindow);
  }
}

/** The states in which the peer is done sending on a stream. */
const PEER_DONE = new Set<StreamState>(["halfClosedRemote", "closed", "reset"]);

/**
 * The stream table of a connection (docs/protocol.md section 5), as the Python core's
 * `StreamTable`: the live streams, the ids (ours odd or even by role, theirs increasing),
 * the streams that hold a `max_streams` slot, the finished streams whose messages are
 * still unconsumed (lingering), and a short memory of recently closed ids (frames for
 * them are late, not abuse).
 */
export class StreamTable {
  /** Live streams (not closed, not reset), by id; stream 0 is not among them. */
  readonly live = new Map<number, Stream>();
  /** Finished streams whose delivered messages are not all consumed yet. */
  readonly lingering = new Map<number, Stream>();
  /** Our streams that hold a slot, and the peer's. */
  readonly localActive = new Set<number>();
  readonly remoteActive = new Set<number>();
  /** The highest id the peer has opened. */
  highestRemote = 0;
  private nextLocal: number;
  private readonly recent = new Set<number>(); // insertion-ordered: the oldest first

  constructor(
    private readonly localParity: 0 | 1,
    private readonly remember: number,
  ) {
    this.nextLocal = localParity === 1 ? 1 : 2;
  }

  /** Live streams (other than 0). */
  get size(): number {
    return this.live.size;
  }

  /** A live stream, or undefined. */
  get(sid: number): Stream | undefined {
    return this.live.get(sid);
  }

  /** A live or lingering stream (one whose messages may still be acknowledged). */
  find(sid: number): Stream | undefined {
    return this.live.get(sid) ?? this.lingering.get(sid);
  }

  values(): IterableIterator<Stream> {
    return this.live.values();
  }

  /** Whether `sid` is one of our ids (odd for a client, even for a server). */
  isLocalId(sid: number): boolean {
    return sid % 2 === this.localParity;
  }

  /** A frame may only name a stream its initiator has opened. */
  checkKnown(sid: number): void {
    const highest = this.isLocalId(sid) ? this.nextLocal - 2 : this.highestRemote;
    if (sid > highest) throw new ProtocolError(`frame for stream ${sid}, which was never opened`);
  }

  /** Whether `sid` finished recently (a late frame for it is no abuse). */
  recentlyClosed(sid: number): boolean {
    return this.recent.has(sid);
  }

  /** Open our next stream; it holds a slot. */
  openLocal(sendCredit: number, recvWindow: number): Stream {
    const stream = new Stream(this.nextLocal, true, sendCredit, recvWindow);
    this.nextLocal += 2;
    this.live.set(stream.id, stream);
    this.localActive.add(stream.id);
    return stream;
  }

  /** The id of a peer's OPEN: its parity, and above every id it opened before. */
  checkRemoteId(sid: number): void {
    if (this.isLocalId(sid)) throw new ProtocolError(`OPEN of stream ${sid}: wrong parity for the peer`);
    if (sid <= this.highestRemote) {
      throw new ProtocolError(`OPEN of stream ${sid} after stream ${this.highestRemote}: ids must increase`);
    }
    this.highestRemote = sid;
  }

  /** A stream the peer opened (its id checked); it holds a slot. */
  openRemote(sid: number, sendCredit: number, recvWindow: number): Stream {
    const stream = new Stream(sid, false, sendCredit, recvWindow);
    this.live.set(sid, stream);
    this.remoteActive.add(sid);
    return stream;
  }

  /** A stream leaves the table (reset, or closed with our END sent). */
  finish(stream: Stream): void {
    this.live.delete(stream.id);
    this.rememberClosed(stream.id);
    if (stream.unacked) this.lingering.set(stream.id, stream);
    this.freeSlotIfDone(stream);
  }

  /** Everything delivered on `stream` was consumed. */
  consumedAll(stream: Stream): void {
    this.lingering.delete(stream.id);
    this.freeSlotIfDone(stream);
  }

  /**
   * A stream's slot comes back once the peer is done with it on the wire and the
   * application acknowledged everything that arrived on it (docs/protocol.md section 5).
   */
  freeSlotIfDone(stream: Stream): void {
    if (stream.unacked) return;
    if (stream.local) {
      if (PEER_DONE.has(stream.state)) this.localActive.delete(stream.id);
    } else if (!this.live.has(stream.id)) {
      this.remoteActive.delete(stream.id);
    }
  }

  /** Remember `sid` as recently closed (the oldest is forgotten past the limit). */
  rememberClosed(sid: number): void {
    this.recent.add(sid);
    if (this.recent.size > this.remember) {
      const oldest = this.recent.values().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
  }
}
