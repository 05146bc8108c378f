"""Binding to the official ``mcp`` SDK: client transport, server runner, JSON-RPC routing."""

from .asgi import asgi
from .bridge import DEFAULT_SEND_BUDGET, REQUEST_REFUSED, SessionBridge
from .client import client_streams, connect
from .server import DEFAULT_SETTINGS, McpWsServer, serve, serving

__all__ = [
    "DEFAULT_SEND_BUDGET",
    "DEFAULT_SETTINGS",
    "REQUEST_REFUSED",
    "McpWsServer",
    "SessionBridge",
    "asgi",
    "client_streams",
    "connect",
    "serve",
    "serving",
]
