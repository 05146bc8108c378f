"""Exceptions of mcp_ws, all in this module. Every exception the library raises derives
from ``McpWsError``, and every class here is raised somewhere::

    McpWsError
    ├── ProtocolError                 a peer broke the wire protocol (carries error_code)
    │   ├── FrameSizeError            FRAME_SIZE_ERROR
    │   ├── FlowControlError          FLOW_CONTROL_ERROR
    │   ├── EnhanceYourCalmError      ENHANCE_YOUR_CALM (abuse limits)
    │   └── ProtocolTimeoutError      TIMEOUT (no HELLO, dead peer)
    ├── ConnectionClosedError         the connection ended: the core's calls after the end
    ├── HandshakeError                the WebSocket handshake failed (``status``: 401, ...)
    ├── CallClosedError               a producer's send on a call that was answered
    ├── CallCancelledError            the caller cancelled its `stream_tool` call
    ├── ToolCallError                 the tool answered ``isError: true`` (``result``)
    ├── UnknownHandle                 a call store's read: no such call for you (``code``)
    ├── EventsGone                    a call store's read below what is kept (``code``)
    ├── InvalidCursor                 a call store's read with a negative ``after``
    ├── StoreUnavailable              the Redis call store cannot be used (extra, loop)
    └── UsageError                    the local application misused the API (a bug)
        ├── StreamStateError          send on a stream that cannot send
        ├── StreamLimitError          opening past max_streams
        └── MessageTooLargeForPeer    a message larger than the peer accepts

A ``ProtocolError`` always describes the peer's input and names the ``error_code`` sent
back for it; mistakes of the local application are ``UsageError``s. Through the SDK, a
call that fails because of the wire is a JSON-RPC error (``MCPError``), not one of
these: -32000 when its connection ended, -32003 when the peer cancelled or refused it
(``docs/protocol.md`` section 7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import ErrorCode

if TYPE_CHECKING:  # the core imports no SDK module at run time
    from mcp_types import CallToolResult

__all__ = [
    "CallCancelledError",
    "CallClosedError",
    "ConnectionClosedError",
    "EnhanceYourCalmError",
    "EventsGone",
    "FlowControlError",
    "FrameSizeError",
    "HandshakeError",
    "InvalidCursor",
    "McpWsError",
    "MessageTooLargeForPeer",
    "ProtocolError",
    "ProtocolTimeoutError",
    "StoreUnavailable",
    "StreamLimitError",
    "StreamStateError",
    "ToolCallError",
    "UnknownHandle",
    "UsageError",
]


class McpWsError(Exception):
    """Root of every exception raised by mcp_ws."""


class ProtocolError(McpWsError):
    """The peer violated the mcp-ws wire protocol.

    ``error_code`` is the code sent in the GOAWAY (or CANCEL) that answers it.
    """

    error_code: ErrorCode = ErrorCode.PROTOCOL_ERROR

    def __init__(self, message: str = "", *, stream_id: int | None = None) -> None:
        super().__init__(message or self.error_code.name)
        self.message = message or self.error_code.name
        self.stream_id = stream_id


class FrameSizeError(ProtocolError):
    """A frame or WebSocket message exceeded the receiver's size limits."""

    error_code = ErrorCode.FRAME_SIZE_ERROR


class FlowControlError(ProtocolError):
    """The peer sent more than its credit, or overflowed a window."""

    error_code = ErrorCode.FLOW_CONTROL_ERROR


class EnhanceYourCalmError(ProtocolError):
    """The peer crossed an abuse limit (floods, rapid open/cancel, unread replies)."""

    error_code = ErrorCode.ENHANCE_YOUR_CALM


class ProtocolTimeoutError(ProtocolError):
    """The peer sent no HELLO in time, or went silent past the keepalive limit."""

    error_code = ErrorCode.TIMEOUT


class ConnectionClosedError(McpWsError):
    """The connection is closed; raised for every stream still open when it ended."""

    def __init__(
        self, message: str, *, error_code: ErrorCode = ErrorCode.NO_ERROR, remote: bool = True
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.remote = remote


class HandshakeError(McpWsError):
    """The WebSocket opening handshake failed (``status`` is the HTTP status, if any)."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class CallClosedError(McpWsError):
    """A producer sent on a call that is over on the wire: it was already answered."""


class CallCancelledError(McpWsError):
    """The caller cancelled the call (`ToolStream.cancel`, a timeout, leaving the block)."""


class ToolCallError(McpWsError):
    """The tool answered with ``isError: true``; ``result`` holds its answer."""

    def __init__(self, message: str, result: CallToolResult) -> None:
        super().__init__(message)
        self.result = result


class UnknownHandle(McpWsError):
    """A call store's read (mcp_ws/sdk/store.py): no call with this handle that this
    principal may read: unknown, another principal's, past its retention, or malformed,
    all alike (a guess learns nothing). ``code`` is the JSON-RPC error code to answer."""

    code = -32005
    data: dict[str, object] | None = None

    def __init__(self) -> None:
        super().__init__("unknown handle")


class EventsGone(McpWsError):
    """A call store's read below what is still kept; ``earliest_seq`` is the first kept
    (also in ``data``, as the JSON-RPC error carries it)."""

    code = -32006

    def __init__(self, earliest_seq: int) -> None:
        super().__init__(f"events gone: the earliest kept is seq {earliest_seq}")
        self.earliest_seq = earliest_seq
        self.data = {"earliestSeq": earliest_seq}


class InvalidCursor(McpWsError):
    """A call store's read whose ``after`` is not an integer >= 0: invalid params."""

    code = -32602
    data: dict[str, object] | None = None

    def __init__(self, after: object) -> None:
        super().__init__(f"invalid cursor: after must be an integer >= 0, got {after!r}")


class StoreUnavailable(McpWsError):
    """The Redis call store (mcp_ws/sdk/redis_store.py) cannot be used here: the
    ``redis`` extra is missing, the event loop is not asyncio, or Redis does not answer."""


class UsageError(McpWsError):
    """The local application used the API in a way the protocol forbids."""


class StreamStateError(UsageError):
    """The stream cannot do that in its current state (e.g. send after END or CANCEL)."""


class StreamLimitError(UsageError):
    """Opening one more stream would exceed the peer's ``max_streams``; wait and retry."""


class MessageTooLargeForPeer(UsageError):
    """The encoded message is larger than the peer's ``max_message_size``."""
