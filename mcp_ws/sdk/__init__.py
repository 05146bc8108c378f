"""Binding to the official ``mcp`` SDK: client transport, server runner, JSON-RPC routing,
and the streaming extension (``partial_results`` on servers, ``stream_tool`` on clients)."""

from ..transport.mux import LinkState
from .asgi import asgi
from .bridge import (
    DEFAULT_SEND_BUDGET,
    OUTCOME_UNKNOWN,
    REQUEST_REFUSED,
    CallClosedError,
    SessionBridge,
)
from .client import client_streams, connect
from .partial import PartialResults, advertise_streaming, partial_results
from .server import DEFAULT_SETTINGS, McpWsServer, serve, serving
from .stream_tool import (
    CallCancelledError,
    Completed,
    Delta,
    Failed,
    Started,
    StreamEvent,
    StreamingExtension,
    ToolCallError,
    ToolStream,
    partial_result_binding,
    stream_tool,
)
from .streaming import EXTENSION_ID, PARTIAL_RESULT, STREAMS

__all__ = [
    "DEFAULT_SEND_BUDGET",
    "DEFAULT_SETTINGS",
    "EXTENSION_ID",
    "OUTCOME_UNKNOWN",
    "PARTIAL_RESULT",
    "REQUEST_REFUSED",
    "STREAMS",
    "CallCancelledError",
    "CallClosedError",
    "Completed",
    "Delta",
    "Failed",
    "LinkState",
    "McpWsServer",
    "PartialResults",
    "SessionBridge",
    "Started",
    "StreamEvent",
    "StreamingExtension",
    "ToolCallError",
    "ToolStream",
    "advertise_streaming",
    "asgi",
    "client_streams",
    "connect",
    "partial_result_binding",
    "partial_results",
    "serve",
    "serving",
    "stream_tool",
]
