"""Binding to the official ``mcp`` SDK: client transport, server runner, JSON-RPC routing."""

from .bridge import DEFAULT_SEND_BUDGET, REQUEST_REFUSED, SessionBridge
from .client import connect
from .server import DEFAULT_SETTINGS, McpWsServer, serve, serving

__all__ = [
    "DEFAULT_SEND_BUDGET",
    "DEFAULT_SETTINGS",
    "REQUEST_REFUSED",
    "McpWsServer",
    "SessionBridge",
    "connect",
    "serve",
    "serving",
]
