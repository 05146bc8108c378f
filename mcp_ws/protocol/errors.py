"""Exceptions of mcp_ws. Every exception the library raises derives from ``McpWsError``::

    McpWsError
    ├── ProtocolError                 a peer broke the wire protocol (carries error_code)
    │   ├── FrameSizeError            FRAME_SIZE_ERROR
    │   ├── FlowControlError          FLOW_CONTROL_ERROR
    │   ├── StreamClosedError         STREAM_CLOSED
    │   ├── MessageTooLargeError      MESSAGE_TOO_LARGE
    │   ├── EnhanceYourCalmError      ENHANCE_YOUR_CALM (abuse limits)
    │   └── ProtocolTimeoutError      TIMEOUT (no HELLO, dead peer)
    ├── StreamError                   one stream failed; the connection lives on
    │   └── StreamCancelledError      cancelled or refused (by either side)
    ├── ConnectionClosedError         the connection ended; every open stream fails with it
    └── UsageError                    the local application misused the API (a bug)
        ├── StreamStateError          send on a stream that cannot send
        ├── StreamLimitError          opening past the peer's max_streams
        └── MessageTooLargeForPeer    a message larger than the peer accepts

A ``ProtocolError`` always describes the peer's input and names the ``error_code`` sent
back for it; mistakes of the local application are ``UsageError``s. ``StreamError`` and
``ConnectionClosedError`` say with ``remote`` which side ended the stream or connection.
"""

from __future__ import annotations

from .constants import ErrorCode

__all__ = [
    "ConnectionClosedError",
    "EnhanceYourCalmError",
    "FlowControlError",
    "FrameSizeError",
    "McpWsError",
    "MessageTooLargeError",
    "MessageTooLargeForPeer",
    "ProtocolError",
    "ProtocolTimeoutError",
    "StreamCancelledError",
    "StreamClosedError",
    "StreamError",
    "StreamLimitError",
    "StreamStateError",
    "UsageError",
    "error_for_code",
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


class StreamClosedError(ProtocolError):
    """The peer sent on a stream it had already ended."""

    error_code = ErrorCode.STREAM_CLOSED


class MessageTooLargeError(ProtocolError):
    """A reassembled message exceeded ``max_message_size`` or the reassembly budget."""

    error_code = ErrorCode.MESSAGE_TOO_LARGE


class EnhanceYourCalmError(ProtocolError):
    """The peer crossed an abuse limit (floods, rapid open/cancel, unread replies)."""

    error_code = ErrorCode.ENHANCE_YOUR_CALM


class ProtocolTimeoutError(ProtocolError):
    """The peer sent no HELLO in time, or went silent past the keepalive limit."""

    error_code = ErrorCode.TIMEOUT


class StreamError(McpWsError):
    """One stream failed; other streams and the connection are unaffected."""

    def __init__(
        self, message: str, *, stream_id: int, error_code: ErrorCode, remote: bool
    ) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class StreamCancelledError(StreamError):
    """The stream was cancelled (CANCEL sent or received), including refusals."""


class ConnectionClosedError(McpWsError):
    """The connection is closed; raised for every stream still open when it ended."""

    def __init__(
        self, message: str, *, error_code: ErrorCode = ErrorCode.NO_ERROR, remote: bool = True
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.remote = remote


class UsageError(McpWsError):
    """The local application used the API in a way the protocol forbids."""


class StreamStateError(UsageError):
    """The stream cannot do that in its current state (e.g. send after END or CANCEL)."""


class StreamLimitError(UsageError):
    """Opening one more stream would exceed the peer's ``max_streams``; wait and retry."""


class MessageTooLargeForPeer(UsageError):
    """The encoded message is larger than the peer's ``max_message_size``."""


_BY_CODE: dict[ErrorCode, type[ProtocolError]] = {
    cls.error_code: cls
    for cls in (
        ProtocolError,
        FrameSizeError,
        FlowControlError,
        StreamClosedError,
        MessageTooLargeError,
        EnhanceYourCalmError,
        ProtocolTimeoutError,
    )
}


def error_for_code(code: ErrorCode) -> type[ProtocolError]:
    """The most specific ``ProtocolError`` subclass for an error code."""
    return _BY_CODE.get(code, ProtocolError)
