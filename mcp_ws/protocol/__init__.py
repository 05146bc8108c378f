"""The sans-I/O core of mcp-ws v1: frames, settings, streams, credit, events, errors.

Nothing here does I/O or imports anyio, websockets or socket: feed received WebSocket
binary messages to ``Connection.receive_data`` and send what ``data_to_send`` returns.
"""

from .connection import Connection, ConnectionState, Role
from .constants import (
    CLOSE_CODES,
    COMPAT_SUBPROTOCOL,
    MAX_WINDOW,
    SUBPROTOCOL,
    ErrorCode,
    Flag,
    FrameType,
    close_code_for,
)
from .errors import (
    ConnectionClosedError,
    EnhanceYourCalmError,
    FlowControlError,
    FrameSizeError,
    McpWsError,
    MessageTooLargeForPeer,
    ProtocolError,
    ProtocolTimeoutError,
    StreamLimitError,
    StreamStateError,
    UsageError,
)
from .events import (
    ConnectionTerminated,
    CreditGranted,
    Event,
    GoAwayReceived,
    HelloReceived,
    InvalidMessageReceived,
    MessageReceived,
    PingAcknowledged,
    StreamCancelled,
    StreamEnded,
    StreamOpened,
)
from .frames import (
    Cancel,
    Credit,
    Data,
    Frame,
    GoAway,
    Hello,
    Open,
    Ping,
    UnknownFrame,
    decode_message,
    encode_frame,
)
from .limits import Limits
from .settings import Settings
from .state import StreamState

__all__ = [
    "CLOSE_CODES",
    "COMPAT_SUBPROTOCOL",
    "MAX_WINDOW",
    "SUBPROTOCOL",
    "Cancel",
    "Connection",
    "ConnectionClosedError",
    "ConnectionState",
    "ConnectionTerminated",
    "Credit",
    "CreditGranted",
    "Data",
    "EnhanceYourCalmError",
    "ErrorCode",
    "Event",
    "Flag",
    "FlowControlError",
    "Frame",
    "FrameSizeError",
    "FrameType",
    "GoAway",
    "GoAwayReceived",
    "Hello",
    "HelloReceived",
    "InvalidMessageReceived",
    "Limits",
    "McpWsError",
    "MessageReceived",
    "MessageTooLargeForPeer",
    "Open",
    "Ping",
    "PingAcknowledged",
    "ProtocolError",
    "ProtocolTimeoutError",
    "Role",
    "Settings",
    "StreamCancelled",
    "StreamEnded",
    "StreamLimitError",
    "StreamOpened",
    "StreamState",
    "StreamStateError",
    "UnknownFrame",
    "UsageError",
    "close_code_for",
    "decode_message",
    "encode_frame",
]
