"""Events returned by ``Connection.receive_data`` and ``Connection.tick``.

Immutable, keyword-only, named in the past tense: each says what the peer did (or what
the connection did on the application's behalf).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import ErrorCode
from .errors import ProtocolError
from .settings import Settings

__all__ = [
    "ConnectionTerminated",
    "CreditGranted",
    "Event",
    "GoAwayReceived",
    "HelloReceived",
    "InvalidMessageReceived",
    "LinkLost",
    "MessageReceived",
    "PingAcknowledged",
    "Resumed",
    "StreamCancelled",
    "StreamEnded",
    "StreamOpened",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloReceived:
    """The peer's HELLO arrived; ``settings`` now govern what we send."""

    settings: Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened:
    """The peer opened stream ``stream_id``; its first message follows."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageReceived:
    """A complete JSON-RPC message arrived on ``stream_id`` (0: the session stream).

    When the application's reader takes it, call
    ``Connection.acknowledge_received(stream_id, flow_controlled_length)``: that is
    what returns credit to the peer.
    """

    stream_id: int
    message: dict[str, Any]
    flow_controlled_length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidMessageReceived:
    """A message on stream 0 was dropped (not JSON-RPC, or too large); the session goes on."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded:
    """The peer sent END on ``stream_id``: it sends nothing more there."""

    stream_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamCancelled:
    """``stream_id`` was reset: by the peer's CANCEL (``remote``) or by us for a stream error."""

    stream_id: int
    error_code: ErrorCode
    reason: str
    remote: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditGranted:
    """The peer granted credit on ``stream_id`` (0: the connection); queued data may flow."""

    stream_id: int
    increment: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PingAcknowledged:
    """The peer answered our PING ``opaque``; ``rtt`` is the round trip in seconds."""

    opaque: int
    rtt: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTerminated:
    """The connection is over: the peer sent GOAWAY with an error, or we failed it.

    ``close_code`` is the WebSocket close code the I/O layer should use after sending
    ``data_to_send()``. ``error`` is the ``ProtocolError`` that ended it locally, if any.
    A graceful GOAWAY(NO_ERROR) from the peer does not end the connection: it arrives as
    ``GoAwayReceived``.
    """

    error_code: ErrorCode
    reason: str
    last_stream_id: int
    remote: bool
    close_code: int
    error: ProtocolError | None = None
    session_lost: bool = False
    """Resume was agreed and could not save the connection (refused, or the link stayed
    lost): what was in flight may or may not have happened (docs/protocol.md section 9)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAwayReceived:
    """The peer is shutting down gracefully: streams above ``last_stream_id`` were refused."""

    last_stream_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkLost:
    """The peer went silent on a connection that can resume: the I/O layer should drop
    this WebSocket and resume on a new one (the connection is suspended)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed:
    """The connection goes on over a new WebSocket (docs/protocol.md section 9);
    ``resent`` frames the peer had not received are sent again."""

    resent: int


Event = (
    HelloReceived
    | StreamOpened
    | MessageReceived
    | InvalidMessageReceived
    | StreamEnded
    | StreamCancelled
    | CreditGranted
    | PingAcknowledged
    | ConnectionTerminated
    | GoAwayReceived
    | LinkLost
    | Resumed
)


# The receive path makes three of these per request and two per answer. A frozen
# dataclass's keyword ``__init__`` costs two to three times what setting its slots
# directly does on CPython 3.11, so the core builds them here: the same objects, equal
# to what the keyword constructors make (tests/protocol/test_core_parts.py checks every field).
_new = object.__new__
_set = object.__setattr__


def stream_opened(stream_id: int) -> StreamOpened:
    """``StreamOpened(stream_id=stream_id)``, for the receive path."""
    event = _new(StreamOpened)
    _set(event, "stream_id", stream_id)
    return event


def message_received(stream_id: int, message: dict[str, Any], size: int) -> MessageReceived:
    """``MessageReceived(stream_id=..., message=..., flow_controlled_length=size)``, for
    the receive path."""
    event = _new(MessageReceived)
    _set(event, "stream_id", stream_id)
    _set(event, "message", message)
    _set(event, "flow_controlled_length", size)
    return event


def stream_ended(stream_id: int) -> StreamEnded:
    """``StreamEnded(stream_id=stream_id)``, for the receive path."""
    event = _new(StreamEnded)
    _set(event, "stream_id", stream_id)
    return event
