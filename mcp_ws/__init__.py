"""mcp_ws: real streaming for MCP over one multiplexed WebSocket.

``mcp_ws.protocol`` is the sans-I/O core (frames, streams, credit). Importing this
package loads nothing else: the I/O layers are imported on first use.
"""

from __future__ import annotations

from .protocol.errors import (
    ConnectionClosedError,
    McpWsError,
    ProtocolError,
    StreamCancelledError,
    StreamError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "ConnectionClosedError",
    "McpWsError",
    "ProtocolError",
    "StreamCancelledError",
    "StreamError",
    "UsageError",
    "__version__",
]
