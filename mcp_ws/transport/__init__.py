"""anyio I/O for mcp-ws: WebSocket handshakes over TCP/TLS and the connection pump.

Runs unchanged on asyncio and trio. `tcp` opens and accepts TCP connections (with a
leaner byte stream of its own on asyncio); `WebSocket` adapts the ``websockets`` sans-I/O
protocol to an anyio byte stream; `MuxConnection` drives the sans-I/O `Connection` over
any `MessageChannel`; `HandshakePolicy` decides who may connect;
`memory_channel_pair` joins two channels in memory (no socket).
"""

from .memory import MemoryChannel, memory_channel_pair
from .mux import MuxConnection
from .policy import (
    BEARER_SUBPROTOCOL_PREFIX,
    LOOPBACK_ORIGINS,
    Authenticator,
    HandshakePolicy,
    bearer_token,
)
from .websocket import HandshakeError, MessageChannel, WebSocket, accept_websocket, open_websocket

__all__ = [
    "BEARER_SUBPROTOCOL_PREFIX",
    "LOOPBACK_ORIGINS",
    "Authenticator",
    "HandshakeError",
    "HandshakePolicy",
    "MemoryChannel",
    "MessageChannel",
    "MuxConnection",
    "WebSocket",
    "accept_websocket",
    "bearer_token",
    "memory_channel_pair",
    "open_websocket",
]
