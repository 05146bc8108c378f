/**
 * mcp-ws-client: mcp-ws for the MCP TypeScript SDK (docs/protocol.md, docs/streaming.md).
 *
 * - `McpWsTransport`: the SDK's `Transport` over one multiplexed WebSocket;
 * - `streamTool`: a tool's partial output as an async iterable, with flow control;
 * - `attachStream`: the same events of a streamed call, read again by its handle;
 * - `Connection`: the sans-I/O protocol core, for other I/O layers.
 */
export { Connection, DEFAULT_LIMITS, type Event, type Limits, type Role } from "./connection.js";
export {
  COMPAT_SUBPROTOCOL,
  ErrorCode,
  SUBPROTOCOL,
  closeCodeFor,
  errorName,
  truncateUtf8,
} from "./constants.js";
export {
  ConnectionClosedError,
  HandshakeError,
  McpWsError,
  MessageTooLargeForPeer,
  ProtocolError,
  StreamLimitError,
  StreamStateError,
  UsageError,
} from "./errors.js";
export { type Frame, type Message, decodeMessage, decodePayload, encodeFrame, encodePayload } from "./frames.js";
export { DEFAULT_SETTINGS, type Settings, makeSettings, receiveMemoryBound } from "./settings.js";
export {
  type AttachOptions,
  AttachedStream,
  CallCancelledError,
  type ContentBlock,
  EVENTS_GONE,
  EXTENSION_ID,
  type StreamEvent,
  type StreamToolOptions,
  ToolCallError,
  ToolStream,
  UNKNOWN_HANDLE,
  attachStream,
  streamTool,
} from "./stream.js";
export {
  ATTACH,
  CANCEL,
  CONNECTION_CLOSED,
  type DirectSubscriber,
  type LinkState,
  McpWsTransport,
  type McpWsTransportOptions,
  NODE_PARAMETER,
  OUTCOME_UNKNOWN,
  PARTIAL_RESULT,
  WORKER_PARAMETER,
  REQUEST_REFUSED,
  type WebSocketConstructor,
  type WebSocketLike,
  jsonSafe,
} from "./transport.js";
