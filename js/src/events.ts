/**
 * What a connection tells its application, in the order it happened: the events of the
 * Python core's `mcp_ws/protocol/events.py`, as one tagged union.
 */
import type { ErrorCode } from "./constants.js";
import type { Message } from "./frames.js";
import type { Settings } from "./settings.js";

/** One event of a connection (`Connection.receiveData`, `tick`, `connectionLost`). */
export type Event =
  | { kind: "hello"; settings: Settings }
  | { kind: "opened"; streamId: number }
  | { kind: "message"; streamId: number; message: Message; size: number }
  | { kind: "ended"; streamId: number }
  | { kind: "cancelled"; streamId: number; code: ErrorCode; reason: string; remote: boolean }
  | { kind: "credit"; streamId: number; increment: number }
  | { kind: "pingAck"; opaque: number | bigint; rtt: number }
  | { kind: "goaway"; lastStreamId: number; reason: string }
  | { kind: "invalid"; streamId: number; reason: string }
  | {
      kind: "terminated";
      code: ErrorCode;
      reason: string;
      lastStreamId: number;
      remote: boolean;
      closeCode: number;
      /** Resume was agreed and could not save the connection (docs/protocol.md section 9). */
      sessionLost?: boolean;
    }
  | { kind: "linkLost"; reason: string }
  | { kind: "resumed"; resent: number };
