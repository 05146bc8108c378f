/** Wire constants of mcp-ws v1 (docs/protocol.md sections 2 and 8). */

/** The WebSocket subprotocol of the wire protocol. */
export const SUBPROTOCOL = "mcp-ws.v1";
/** The JSON-text compatibility subprotocol: one JSON-RPC message per text message. */
export const COMPAT_SUBPROTOCOL = "mcp";
/** Browsers send a bearer token as the subprotocol `mcp-ws.bearer.<token>`. */
export const BEARER_SUBPROTOCOL_PREFIX = "mcp-ws.bearer.";
/** Largest legal credit window and CREDIT increment. */
export const MAX_WINDOW = 2 ** 31 - 1;
/** Largest legal stream id. */
export const MAX_STREAM_ID = 2 ** 31 - 1;
/** How much longer than `max_frame_size` one WebSocket message may be. */
export const MESSAGE_OVERHEAD = 1024;
/** CANCEL and GOAWAY reasons are cut to this many bytes of UTF-8. */
export const MAX_REASON_BYTES = 256;
/** The longest reason a WebSocket close frame holds, in bytes of UTF-8. */
export const MAX_CLOSE_REASON_BYTES = 123;

export const FrameType = {
  HELLO: 0,
  OPEN: 1,
  DATA: 2,
  CANCEL: 3,
  CREDIT: 4,
  PING: 5,
  GOAWAY: 6,
} as const;

/** Flags: END and MORE on OPEN and DATA, ACK (same bit as END) on PING. */
export const Flag = { NONE: 0, END: 0x1, MORE: 0x2, ACK: 0x1 } as const;

/** Error codes carried by CANCEL and GOAWAY. */
export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  STREAM_CLOSED: 4,
  FRAME_SIZE_ERROR: 5,
  REFUSED_STREAM: 6,
  CANCELLED: 7,
  MESSAGE_TOO_LARGE: 8,
  ENHANCE_YOUR_CALM: 9,
  TIMEOUT: 10,
  UNAUTHORIZED: 11,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/** A code from the wire as an `ErrorCode`; unknown codes are INTERNAL_ERROR. */
export function parseErrorCode(value: number): ErrorCode {
  return NAMES.has(value) ? (value as ErrorCode) : ErrorCode.INTERNAL_ERROR;
}

/** The name of an error code, e.g. `"PROTOCOL_ERROR"`. */
export function errorName(code: ErrorCode): string {
  return NAMES.get(code) ?? "INTERNAL_ERROR";
}

const CLOSE_CODES: Record<number, number> = {
  [ErrorCode.NO_ERROR]: 1000,
  [ErrorCode.PROTOCOL_ERROR]: 1002,
  [ErrorCode.INTERNAL_ERROR]: 1011,
  [ErrorCode.FLOW_CONTROL_ERROR]: 1002,
  [ErrorCode.STREAM_CLOSED]: 1002,
  [ErrorCode.FRAME_SIZE_ERROR]: 1009,
  [ErrorCode.MESSAGE_TOO_LARGE]: 1009,
  [ErrorCode.ENHANCE_YOUR_CALM]: 1008,
  [ErrorCode.TIMEOUT]: 1008,
  [ErrorCode.UNAUTHORIZED]: 1008,
};

/** The WebSocket close code that follows a GOAWAY with `code`. */
export function closeCodeFor(code: ErrorCode): number {
  return CLOSE_CODES[code] ?? 1011;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** `text` cut to at most `limit` bytes of UTF-8, never inside a character. */
export function truncateUtf8(text: string, limit: number): string {
  if (text.length * 3 <= limit) return text; // UTF-16 units are at most 3 bytes each
  const bytes = encoder.encode(text);
  if (bytes.length <= limit) return text;
  let end = limit;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1; // not inside a character
  return decoder.decode(bytes.subarray(0, end));
}
