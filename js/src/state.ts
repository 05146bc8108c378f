/**
 * The stream state table (docs/protocol.md section 5), the same table as the Python core's
 * `mcp_ws/protocol/state.py`: what a frame sent or received does to a stream in each state.
 * The connection looks its rules up here instead of testing states inline.
 */

/** A stream's state: `open`, then half-closed by one END, closed by both, or reset. */
export type StreamState = "open" | "halfClosedLocal" | "halfClosedRemote" | "closed" | "reset";

/** What happens to a stream: a frame sent or received. */
export type StreamInput = "sendData" | "sendEnd" | "sendCancel" | "recvData" | "recvEnd" | "recvCancel";

/**
 * What the connection does with the input: apply it (`ok`), drop a late frame for a
 * finished stream (`ignore`, its bytes credited back), answer the peer sending after its
 * own END with CANCEL(STREAM_CLOSED) (`streamClosed`), or refuse the local application
 * (`usageError`).
 */
export type Outcome = "ok" | "ignore" | "streamClosed" | "usageError";

type Row = Partial<Record<StreamInput, [Outcome, StreamState]>>;

export const TRANSITIONS: Readonly<Record<StreamState, Row>> = {
  // open: everything goes
  open: {
    sendData: ["ok", "open"],
    sendEnd: ["ok", "halfClosedLocal"],
    recvData: ["ok", "open"],
    recvEnd: ["ok", "halfClosedRemote"],
    sendCancel: ["ok", "reset"],
    recvCancel: ["ok", "reset"],
  },
  // we ended: the peer may still send
  halfClosedLocal: {
    recvData: ["ok", "halfClosedLocal"],
    recvEnd: ["ok", "closed"],
    sendCancel: ["ok", "reset"],
    recvCancel: ["ok", "reset"],
  },
  // the peer ended: it must not send again; we may
  halfClosedRemote: {
    sendData: ["ok", "halfClosedRemote"],
    sendEnd: ["ok", "closed"],
    recvData: ["streamClosed", "reset"],
    recvEnd: ["streamClosed", "reset"],
    sendCancel: ["ok", "reset"],
    recvCancel: ["ok", "reset"],
  },
  // finished: late frames from the peer are dropped, cancelling again is a no-op
  closed: {
    recvData: ["ignore", "closed"],
    recvEnd: ["ignore", "closed"],
    recvCancel: ["ignore", "closed"],
    sendCancel: ["ignore", "closed"],
  },
  reset: {
    recvData: ["ignore", "reset"],
    recvEnd: ["ignore", "reset"],
    recvCancel: ["ignore", "reset"],
    sendCancel: ["ignore", "reset"],
  },
};

/** Look up one transition; pairs missing from the table keep the state. */
export function transition(state: StreamState, input: StreamInput): [Outcome, StreamState] {
  const found = TRANSITIONS[state][input];
  if (found) return found;
  return input.startsWith("send") ? ["usageError", state] : ["streamClosed", "reset"];
}

const STATES = Object.keys(TRANSITIONS) as StreamState[];

/** The states in which received DATA is applied (read off the table). */
export const RECEIVING: ReadonlySet<StreamState> = new Set(STATES.filter((s) => transition(s, "recvData")[0] === "ok"));

/** The states in which we may send (read off the table). */
export const SENDING: ReadonlySet<StreamState> = new Set(STATES.filter((s) => transition(s, "sendData")[0] === "ok"));

/** The state after a received END, for the states in which it is applied. */
export const AFTER_RECV_END: ReadonlyMap<StreamState, StreamState> = new Map(
  STATES.filter((s) => transition(s, "recvEnd")[0] === "ok").map((s) => [s, transition(s, "recvEnd")[1]]),
);

/** The state after our END, for the states in which we may send it. */
export const AFTER_SEND_END: ReadonlyMap<StreamState, StreamState> = new Map(
  STATES.filter((s) => transition(s, "sendEnd")[0] === "ok").map((s) => [s, transition(s, "sendEnd")[1]]),
);
