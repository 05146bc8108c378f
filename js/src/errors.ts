/**
 * The exceptions of mcp-ws-client:
 *
 *     McpWsError
 *     ├── ProtocolError          the peer broke the wire protocol (has `code`)
 *     ├── ConnectionClosedError  the connection is over (has `code`, `closeCode`)
 *     ├── HandshakeError         the server refused or could not be reached
 *     └── UsageError             the local application misused the API
 *         ├── StreamStateError   send, end or cancel on a stream that cannot do it
 *         ├── StreamLimitError   opening past max_streams
 *         └── MessageTooLargeForPeer  a message larger than the peer accepts
 *
 * The same tree, with the same names, as the Python core's `mcp_ws/protocol/errors.py`.
 */
import { ErrorCode } from "./constants.js";

/** Root of every error raised by mcp-ws-client. */
export class McpWsError extends Error {
  override name = "McpWsError";
}

/** The peer violated the wire protocol; `code` is the GOAWAY or CANCEL code. */
export class ProtocolError extends McpWsError {
  override name = "ProtocolError";
  constructor(
    message: string,
    readonly code: ErrorCode = ErrorCode.PROTOCOL_ERROR,
    readonly streamId: number | undefined = undefined,
  ) {
    super(message);
  }
}

/** The connection is over: `code` says why, `closeCode` is the WebSocket's. */
export class ConnectionClosedError extends McpWsError {
  override name = "ConnectionClosedError";
  constructor(
    message: string,
    readonly code: ErrorCode = ErrorCode.NO_ERROR,
    readonly closeCode: number | undefined = undefined,
  ) {
    super(message);
  }
}

/** The WebSocket handshake failed (refused, unreachable, timed out, wrong subprotocol). */
export class HandshakeError extends McpWsError {
  override name = "HandshakeError";
}

/** The local application used the API in a way the protocol forbids. */
export class UsageError extends McpWsError {
  override name = "UsageError";
}

/** Send, END or cancel on a stream whose state does not allow it (or on stream 0). */
export class StreamStateError extends UsageError {
  override name = "StreamStateError";
}

/** Opening a stream past `max_streams` (ours or the peer's) or after the peer's GOAWAY. */
export class StreamLimitError extends UsageError {
  override name = "StreamLimitError";
}

/** A message larger than the peer's `max_message_size`. */
export class MessageTooLargeForPeer extends UsageError {
  override name = "MessageTooLargeForPeer";
}
