"""Wire constants of mcp-ws v1: frame types, flags, error codes, close codes."""

from __future__ import annotations

import enum

__all__ = [
    "CLOSE_CODES",
    "CLOSE_UNSUPPORTED_DATA",
    "COMPAT_SUBPROTOCOL",
    "MAX_WINDOW",
    "SUBPROTOCOL",
    "ErrorCode",
    "Flag",
    "FrameType",
    "close_code_for",
]

#: The WebSocket subprotocol of this wire protocol.
SUBPROTOCOL = "mcp-ws.v1"
#: The JSON-text compatibility subprotocol (one JSON-RPC message per text message).
COMPAT_SUBPROTOCOL = "mcp"
#: Largest legal credit window, and largest CREDIT increment.
MAX_WINDOW = 2**31 - 1
#: WebSocket close code for a text message on ``mcp-ws.v1``.
CLOSE_UNSUPPORTED_DATA = 1003


class FrameType(enum.IntEnum):
    """The first field of every frame."""

    HELLO = 0
    OPEN = 1
    DATA = 2
    CANCEL = 3
    CREDIT = 4
    PING = 5
    GOAWAY = 6


class Flag(enum.IntFlag):
    """Frame flags. ``ACK`` shares its bit with ``END``: it is only meaningful on PING."""

    NONE = 0
    END = 0x1
    MORE = 0x2
    ACK = 0x1


class ErrorCode(enum.IntEnum):
    """Error codes carried by CANCEL and GOAWAY."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 4
    FRAME_SIZE_ERROR = 5
    REFUSED_STREAM = 6
    CANCELLED = 7
    MESSAGE_TOO_LARGE = 8
    ENHANCE_YOUR_CALM = 9
    TIMEOUT = 10
    UNAUTHORIZED = 11

    @classmethod
    def parse(cls, value: int) -> ErrorCode:
        """Map a code from the wire to an ``ErrorCode``; unknown codes are INTERNAL_ERROR."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL_ERROR


#: The WebSocket close code that follows a GOAWAY with a given error code.
#: REFUSED_STREAM and CANCELLED are stream-only codes; a GOAWAY carrying one
#: closes as an internal error.
CLOSE_CODES: dict[ErrorCode, int] = {
    ErrorCode.NO_ERROR: 1000,
    ErrorCode.PROTOCOL_ERROR: 1002,
    ErrorCode.INTERNAL_ERROR: 1011,
    ErrorCode.FLOW_CONTROL_ERROR: 1002,
    ErrorCode.STREAM_CLOSED: 1002,
    ErrorCode.FRAME_SIZE_ERROR: 1009,
    ErrorCode.MESSAGE_TOO_LARGE: 1009,
    ErrorCode.ENHANCE_YOUR_CALM: 1008,
    ErrorCode.TIMEOUT: 1008,
    ErrorCode.UNAUTHORIZED: 1008,
}


def close_code_for(code: ErrorCode) -> int:
    """The WebSocket close code for a connection ended with ``code``."""
    return CLOSE_CODES.get(code, 1011)
