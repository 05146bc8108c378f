"""mcp_ws: real streaming for MCP over one multiplexed WebSocket.

``mcp_ws.protocol`` is the sans-I/O core (frames, streams, credit). Importing this
package loads nothing else: the I/O layers are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .protocol.errors import (
    CallCancelledError,
    CallClosedError,
    ConnectionClosedError,
    HandshakeError,
    McpWsError,
    ProtocolError,
    StoreUnavailable,
    ToolCallError,
    UsageError,
)

__version__ = "0.1.0"

_LAZY = {
    "asgi": "mcp_ws.sdk",
    "connect": "mcp_ws.sdk",
    "serve": "mcp_ws.sdk",
    "serving": "mcp_ws.sdk",
    "McpWsServer": "mcp_ws.sdk",
    "EXTENSION_ID": "mcp_ws.sdk",
    "OUTCOME_UNKNOWN": "mcp_ws.sdk",
    "LinkState": "mcp_ws.sdk",
    "PARTIAL_RESULT": "mcp_ws.sdk",
    "STREAMS": "mcp_ws.sdk",
    "Completed": "mcp_ws.sdk",
    "Delta": "mcp_ws.sdk",
    "Failed": "mcp_ws.sdk",
    "PartialResults": "mcp_ws.sdk",
    "Started": "mcp_ws.sdk",
    "StreamEvent": "mcp_ws.sdk",
    "StreamingExtension": "mcp_ws.sdk",
    "ToolStream": "mcp_ws.sdk",
    "advertise_streaming": "mcp_ws.sdk",
    "partial_result_binding": "mcp_ws.sdk",
    "partial_results": "mcp_ws.sdk",
    "stream_tool": "mcp_ws.sdk",
    "attach": "mcp_ws.sdk",
    "AttachedStream": "mcp_ws.sdk",
    "EmbeddedStore": "mcp_ws.sdk",
    "RedisStore": "mcp_ws.sdk",
    "ATTACH": "mcp_ws.sdk",
    "EVENTS_GONE": "mcp_ws.sdk",
    "UNKNOWN_HANDLE": "mcp_ws.sdk",
    "bearer_token": "mcp_ws.transport",
    "Settings": "mcp_ws.protocol",
    "Limits": "mcp_ws.protocol",
}


if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` imports on first use
    from .protocol import Limits, Settings
    from .sdk import (
        ATTACH,
        EVENTS_GONE,
        EXTENSION_ID,
        OUTCOME_UNKNOWN,
        PARTIAL_RESULT,
        STREAMS,
        UNKNOWN_HANDLE,
        AttachedStream,
        Completed,
        Delta,
        EmbeddedStore,
        Failed,
        LinkState,
        McpWsServer,
        PartialResults,
        RedisStore,
        Started,
        StreamEvent,
        StreamingExtension,
        ToolStream,
        advertise_streaming,
        asgi,
        attach,
        connect,
        partial_result_binding,
        partial_results,
        serve,
        serving,
        stream_tool,
    )
    from .transport import bearer_token


def __getattr__(name: str) -> object:
    """Import the I/O layers on first use, so ``import mcp_ws.protocol`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_ws' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ATTACH",
    "EVENTS_GONE",
    "EXTENSION_ID",
    "OUTCOME_UNKNOWN",
    "PARTIAL_RESULT",
    "STREAMS",
    "UNKNOWN_HANDLE",
    "AttachedStream",
    "CallCancelledError",
    "CallClosedError",
    "Completed",
    "ConnectionClosedError",
    "Delta",
    "EmbeddedStore",
    "Failed",
    "HandshakeError",
    "Limits",
    "LinkState",
    "McpWsError",
    "McpWsServer",
    "PartialResults",
    "ProtocolError",
    "RedisStore",
    "Settings",
    "Started",
    "StoreUnavailable",
    "StreamEvent",
    "StreamingExtension",
    "ToolCallError",
    "ToolStream",
    "UsageError",
    "__version__",
    "advertise_streaming",
    "asgi",
    "attach",
    "bearer_token",
    "connect",
    "partial_result_binding",
    "partial_results",
    "serve",
    "serving",
    "stream_tool",
]
