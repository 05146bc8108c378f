r"""The calls a session has open on one connection, and how a call gets its own route.

A *call* is a JSON-RPC request carried by a stream: one we sent (it opened a stream of
ours) or one the peer sent (it arrived on a stream of theirs). `CallTable` is the one
place that pairs a request id with its stream, both ways; request ids of the two
directions are separate name spaces, stream ids are unique.

A call may have a *route*: something other than the SDK that takes the messages
arriving on the call's stream (the streaming extension's client side reads its deltas
this way, and returns their credit as it consumes them). A route reaches the call it
belongs to through one meeting point, `routing`: the SDK writes a request in the task
that made the call, so a route set around ``session.call_tool(...)`` is seen by the
bridge when that request goes out, and claimed only by a request the route recognises.

The server side has the mirror meeting point, `handling`: a session's handlers run
inside ``handling(bridge)``, so a tool reaches the bridge of the connection that carries
its call with `handling_bridge` (the streaming extension writes its deltas on the
call's own stream this way). Both are ``ContextVar``\s: a task inherits them from the
task that started it, and nothing is registered process-wide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp_types import JSONRPCNotification, RequestId

if TYPE_CHECKING:
    from .bridge import SessionBridge

__all__ = [
    "CANCELLED",
    "Call",
    "CallTable",
    "Route",
    "cancelled_request_id",
    "claim_route",
    "handling",
    "handling_bridge",
    "routing",
]

CANCELLED = "notifications/cancelled"
"""The notification by which a side cancels a request it sent."""


def cancelled_request_id(message: object) -> RequestId | None:
    """The request a ``notifications/cancelled`` cancels (read as the SDK reads it), or
    ``None`` for any other message."""
    if isinstance(message, JSONRPCNotification) and message.method == CANCELLED:
        params = message.params
        return cancelled_request_id_from_params(params if isinstance(params, Mapping) else None)
    return None


RECENT_CANCELS = 1024
"""How many peer-cancelled request ids a table remembers (see `CallTable.cancelled`)."""


class Route(Protocol):
    """Takes the messages of one call's stream instead of the SDK."""

    def claims(self, method: str, params: Mapping[str, Any] | None) -> bool:
        """Whether the request about to be sent is the call this route waits for."""
        ...

    def attach(self, acknowledge: Callable[[int], None]) -> None:
        """The route is bound: ``acknowledge(size)`` returns credit for consumed bytes."""
        ...

    def take(self, message: Mapping[str, Any], size: int) -> bool:
        """A message of the call's stream; True if the route took it (it then owes
        ``acknowledge(size)`` once consumed), False to hand it to the SDK."""
        ...


_route: ContextVar[Route | None] = ContextVar("mcp_ws_route", default=None)


@contextmanager
def routing(route: Route) -> Iterator[None]:
    """Offer ``route`` to the requests sent from this context (the meeting point)."""
    token = _route.set(route)
    try:
        yield
    finally:
        _route.reset(token)


def claim_route(method: str, params: Mapping[str, Any] | None) -> Route | None:
    """The route offered in this context, if it claims this request."""
    route = _route.get()
    if route is not None and route.claims(method, params):
        return route
    return None


_bridge: ContextVar[SessionBridge | None] = ContextVar("mcp_ws_bridge", default=None)


@contextmanager
def handling(bridge: SessionBridge) -> Iterator[None]:
    """Run a session's handlers with ``bridge`` as theirs (the server's meeting point)."""
    token = _bridge.set(bridge)
    try:
        yield
    finally:
        _bridge.reset(token)


def handling_bridge() -> SessionBridge | None:
    """The bridge of the mcp-ws session whose handler runs in this context, if any."""
    return _bridge.get()


@dataclass(slots=True, eq=False)
class Call:
    """One request and the stream that carries it.

    The bridge builds one per request and passes the fields by position: a class called
    with keywords builds a dict for them, about 1,000 instructions on CPython 3.11."""

    request_id: RequestId
    stream_id: int
    ours: bool
    """True for a request we sent, False for one the peer sent."""
    route: Route | None = None
    request: Any = None
    """Our request itself, kept when it may have to be sent again (a handover)."""


_ID_TYPES = (int, str)  # a tuple: ``int | str`` would build a union on every lookup


class CallTable:
    """Request id <-> stream <-> route, for both directions."""

    def __init__(self) -> None:
        self._own: dict[RequestId, Call] = {}
        self._peer: dict[RequestId, Call] = {}
        self._by_stream: dict[int, Call] = {}
        self._cancelled: deque[RequestId] = deque(maxlen=RECENT_CANCELS)

    def __len__(self) -> int:
        return len(self._by_stream)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._by_stream.values()))

    def add(self, call: Call) -> Call:
        """Record ``call``; its request id and stream must both be free."""
        ids = self._own if call.ours else self._peer
        if call.request_id in ids or call.stream_id in self._by_stream:
            raise ValueError(f"request {call.request_id!r} or stream {call.stream_id} is in use")
        ids[call.request_id] = call
        self._by_stream[call.stream_id] = call
        return call

    def own(self, request_id: object) -> Call | None:
        """Our open request ``request_id``."""
        return self._own.get(request_id) if isinstance(request_id, _ID_TYPES) else None

    def peer(self, request_id: object) -> Call | None:
        """The peer's open request ``request_id``."""
        return self._peer.get(request_id) if isinstance(request_id, _ID_TYPES) else None

    def on_stream(self, stream_id: int) -> Call | None:
        """The call carried by ``stream_id``."""
        return self._by_stream.get(stream_id)

    def remove(self, call: Call) -> None:
        """Forget ``call`` (answered, cancelled or refused); a no-op if already gone."""
        if self._by_stream.get(call.stream_id) is call:
            del self._by_stream[call.stream_id]
            del (self._own if call.ours else self._peer)[call.request_id]

    def clear(self) -> list[Call]:
        """Forget every call; returns them (own calls first)."""
        calls = [*self._own.values(), *self._peer.values()]
        self._own.clear()
        self._peer.clear()
        self._by_stream.clear()
        return calls

    def note_cancelled(self, request_id: RequestId) -> None:
        """Remember that the peer cancelled its request ``request_id``."""
        self._cancelled.append(request_id)

    def cancelled(self, request_id: RequestId) -> bool:
        """Whether the peer recently cancelled ``request_id`` (forgotten once asked)."""
        try:
            self._cancelled.remove(request_id)
        except ValueError:
            return False
        return True
