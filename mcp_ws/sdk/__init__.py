"""Binding to the official ``mcp`` SDK: client transport, server runner, JSON-RPC routing,
and the streaming extension (``partial_results`` on servers, ``stream_tool`` on clients)."""

from ..transport.mux import LinkState
from .asgi import asgi
from .attach import AttachedStream, attach
from .bridge import (
    DEFAULT_SEND_BUDGET,
    OUTCOME_UNKNOWN,
    REQUEST_REFUSED,
    CallClosedError,
    SessionBridge,
)
from .client import client_streams, connect
from .partial import PartialResults, advertise_streaming, partial_results
from .redis_store import RedisStore, StoreUnavailable
from .retained import ATTACH, CANCEL, CallStore, RetainedCalls, retained_calls
from .server import DEFAULT_SETTINGS, McpWsServer, serve, serving
from .store import EVENTS_GONE, UNKNOWN_HANDLE, EmbeddedStore
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
    "ATTACH",
    "CANCEL",
    "DEFAULT_SEND_BUDGET",
    "DEFAULT_SETTINGS",
    "EVENTS_GONE",
    "EXTENSION_ID",
    "OUTCOME_UNKNOWN",
    "PARTIAL_RESULT",
    "REQUEST_REFUSED",
    "STREAMS",
    "UNKNOWN_HANDLE",
    "AttachedStream",
    "CallCancelledError",
    "CallClosedError",
    "CallStore",
    "Completed",
    "Delta",
    "EmbeddedStore",
    "Failed",
    "LinkState",
    "McpWsServer",
    "PartialResults",
    "RedisStore",
    "RetainedCalls",
    "SessionBridge",
    "Started",
    "StoreUnavailable",
    "StreamEvent",
    "StreamingExtension",
    "ToolCallError",
    "ToolStream",
    "advertise_streaming",
    "asgi",
    "attach",
    "client_streams",
    "connect",
    "partial_result_binding",
    "partial_results",
    "retained_calls",
    "serve",
    "serving",
    "stream_tool",
]
