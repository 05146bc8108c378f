"""mcp_ws: real streaming for MCP over one multiplexed WebSocket.

``mcp_ws.protocol`` is the sans-I/O core (frames, streams, credit). Importing this
package loads nothing else: the I/O layers are imported on first use.
"""

from __future__ import annotations

import importlib

from .protocol.errors import (
    ConnectionClosedError,
    McpWsError,
    ProtocolError,
    StreamCancelledError,
    StreamError,
    UsageError,
)

__version__ = "0.1.0"

_LAZY = {
    "asgi": "mcp_ws.sdk",
    "connect": "mcp_ws.sdk",
    "serve": "mcp_ws.sdk",
    "serving": "mcp_ws.sdk",
    "McpWsServer": "mcp_ws.sdk",
    "HandshakeError": "mcp_ws.transport",
    "HandshakePolicy": "mcp_ws.transport",
    "bearer_token": "mcp_ws.transport",
    "Settings": "mcp_ws.protocol",
    "Limits": "mcp_ws.protocol",
}


def __getattr__(name: str) -> object:
    """Import the I/O layers on first use, so ``import mcp_ws.protocol`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_ws' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ConnectionClosedError",
    "HandshakeError",
    "HandshakePolicy",
    "Limits",
    "McpWsError",
    "McpWsServer",
    "ProtocolError",
    "Settings",
    "StreamCancelledError",
    "StreamError",
    "UsageError",
    "__version__",
    "asgi",
    "bearer_token",
    "connect",
    "serve",
    "serving",
]
