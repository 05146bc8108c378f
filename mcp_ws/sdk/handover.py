"""Client handover: one SDK session over a succession of mcp-ws connections.

When the server sends a graceful GOAWAY (it is draining for a restart), the calls in
flight finish on that connection, which closes once they are done, while a fresh
connection to the same URL is made at once (so a load balancer in front picks a server
that is up) and every new request goes out on it. A request the server refused
unprocessed (REFUSED_STREAM, or sent just as the GOAWAY arrived) is sent again on the new
connection.

When a connection is lost without GOAWAY, the calls in flight on it fail with
``CONNECTION_CLOSED`` (they may have been processed, so they are not resent), and the
next request connects again, with jittered exponential backoff between failed attempts;
a request for which no connection could be made fails with ``CONNECTION_CLOSED`` too,
and the one after it tries again.

What a new connection replays: in the 2025-11-25 protocol era a server keeps session
state per connection, so the client's ``initialize`` request and its
``notifications/initialized`` are sent again first (their answers stay with mcp-ws),
then the last ``logging/setLevel`` and every ``resources/subscribe`` still in force.
What cannot be carried over: anything else the old server process kept for the session
(its own ids, caches, or a task the client started and has not collected). In the
2026-07-28 era nothing is replayed: requests carry what they need.

**Resume** (on by default, docs/protocol.md section 9) comes first: when a link drops
without a closing handshake and the server agreed to resume, the connection itself
carries on over a new WebSocket (dialled with jittered backoff until the server's grace
period runs out), and nothing above it sees the cut. Only when that fails do the calls
in flight fail, with ``OUTCOME_UNKNOWN``, and the next request connects afresh.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)

from ..protocol.connection import Role
from ..protocol.errors import HandshakeError
from ..protocol.limits import Limits
from ..protocol.resume import ResumeHello
from ..protocol.settings import Settings
from ..transport.mux import LinkState, MuxConnection
from ..transport.websocket import MessageChannel
from .bridge import REQUEST_REFUSED, BridgeReadStream, BridgeWriteStream, Inbox, SessionBridge
from .calls import Route, routing

__all__ = ["RECONNECT_ATTEMPTS", "Handover"]

logger = logging.getLogger("mcp_ws.sdk")

RECONNECT_ATTEMPTS = 5
"""Connection attempts one request makes before it fails with CONNECTION_CLOSED."""

RECONNECT_DELAY = 0.1
"""Seconds before the second attempt; each later one waits twice as long (jittered)."""

RECONNECT_DELAY_MAX = 2.0
"""The longest wait between two attempts. A connection that ends (or is sent away)
sooner than this after it opened counts as a failed attempt; one that lasted longer
resets the backoff. So a server that sends every connection away at once is not
reconnected to in a tight loop."""

RESEND_LIMIT = RECONNECT_ATTEMPTS
"""Times one refused request is sent again before it fails with REQUEST_REFUSED."""

_RESENDS_KEPT = 1024  # request ids whose resends are counted at once


class _Answer:
    """A route that keeps the answer to a request mcp-ws sends itself (a replay)."""

    def __init__(self) -> None:
        self.message: Mapping[str, Any] | None = None
        self.done = anyio.Event()
        self._acknowledge: Callable[[int], None] | None = None

    def claims(self, method: str, params: Mapping[str, Any] | None) -> bool:
        return True  # offered around one request only

    def attach(self, acknowledge: Callable[[int], None]) -> None:
        self._acknowledge = acknowledge

    def take(self, message: Mapping[str, Any], size: int) -> bool:
        if self._acknowledge is not None and size:
            self._acknowledge(size)
        if "method" not in message and not self.done.is_set():
            self.message = message  # the first answer (a later local one is moot)
            self.done.set()
        return True  # nothing of it reaches the SDK


class Handover:
    """The SDK's read and write streams over a succession of connections.

    ``dial()`` opens a WebSocket to the server (the same URL each time) that has chosen
    ``mcp-ws.v1``. Run it inside ``async with``; `start` makes the first connection.
    """

    def __init__(
        self,
        dial: Callable[[], Awaitable[MessageChannel]],
        *,
        settings: Settings,
        limits: Limits | None,
        close_timeout: float,
        send_budget: int,
        handshake_timeout: float,
        resume_dial: Callable[[str | None, str | None], Awaitable[MessageChannel]] | None = None,
        on_link: Callable[[LinkState], None] | None = None,
    ) -> None:
        self._dial = dial
        self._resume_dial = resume_dial
        self._on_link = on_link
        self._settings = settings
        self._limits = limits
        self._close_timeout = close_timeout
        self._send_budget = send_budget
        self._handshake_timeout = handshake_timeout
        self.inbox = Inbox()
        self.read_stream = HandoverReadStream(self)
        self.write_stream = BridgeWriteStream(self.send)
        self.connections = 0
        """Connections made so far (the first one included)."""
        self._current: SessionBridge | None = None
        self._bridges: list[SessionBridge] = []
        self._lock = anyio.Lock()
        self._failures = 0
        self._opened: dict[SessionBridge, float] = {}  # live connections, when they opened
        self._resends: dict[RequestId, int] = {}
        self._group: anyio.abc.TaskGroup | None = None
        # What a new connection replays (2025-11-25 era).
        self._initialize: JSONRPCRequest | None = None
        self._initialized: JSONRPCNotification | None = None
        self._log_level: JSONRPCRequest | None = None
        self._subscriptions: dict[str, JSONRPCRequest] = {}
        self._replays = 0

    @property
    def bridge(self) -> SessionBridge | None:
        """The connection new requests go to (``None`` between connections)."""
        return self._current

    async def __aenter__(self) -> Self:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        with anyio.CancelScope(shield=True):
            for bridge in self._bridges:
                mux = bridge.mux
                if mux is not None and not mux.finished:
                    bridge.cancel_all("the client is leaving")
                    mux.close()
            with anyio.move_on_after(self._close_timeout):
                for bridge in list(self._bridges):
                    if bridge.mux is not None:
                        await bridge.mux.wait_finished()
        self._group.cancel_scope.cancel()
        try:
            return await self._group.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            self.inbox.close()

    async def start(self) -> None:
        """Make the first connection (its errors are the caller's: HandshakeError, ...)."""
        self._current = await self._connect()

    # ------------------------------------------------------------------ connections

    async def _connect(self) -> SessionBridge:
        assert self._group is not None, "use the Handover inside 'async with'"
        channel = await self._dial()
        bridge = SessionBridge(
            Role.CLIENT,
            send_budget=self._send_budget,
            inbox=self.inbox,
            on_goaway=self._going_away,
            retry=self._resend_later,
        )
        resume = self._resume_dial is not None
        mux = MuxConnection(
            channel,
            Role.CLIENT,
            bridge.on_events,
            settings=self._settings,
            limits=self._limits,
            close_timeout=self._close_timeout,
            resume=ResumeHello() if resume else None,
            relink=self._relink if resume else None,
            on_link=self._on_link,
        )
        bridge.attach(mux)
        self._bridges.append(bridge)
        self._opened[bridge] = anyio.current_time()
        self.connections += 1
        self._group.start_soon(self._pump, bridge, mux)
        return bridge

    async def _pump(self, bridge: SessionBridge, mux: MuxConnection) -> None:
        try:
            await mux.run()
        finally:
            self._bridges.remove(bridge)
            if self._current is bridge:
                self._current = None
            self._settle(bridge)
            bridge.close()

    async def _relink(self, mux: MuxConnection, deadline: float) -> MessageChannel | None:
        """A new link for a connection to resume: dial its server (by the name it gave)
        at once, then with jittered exponential backoff, until ``deadline``."""
        assert self._resume_dial is not None
        failures = 0
        while (left := deadline - anyio.current_time()) > 0:
            try:
                with anyio.fail_after(min(self._handshake_timeout, left)):
                    core = mux.core
                    return await self._resume_dial(core.resume_node, core.resume_worker)
            except (OSError, HandshakeError, TimeoutError) as exc:
                failures += 1
                logger.info("resuming: attempt %d failed: %s", failures, exc)
            delay = min(RECONNECT_DELAY * 2 ** (failures - 1), RECONNECT_DELAY_MAX)
            await anyio.sleep(min(delay * random.uniform(0.5, 1.5), max(left, 0)))
        return None

    def _going_away(self, bridge: SessionBridge) -> None:
        """A graceful GOAWAY: new requests go to a new connection, made now rather than
        with the next request, so that the session stays reachable (the server's own
        requests and notifications) and the next call does not wait for the handshake
        (the TypeScript client does the same; docs/parity.md)."""
        self._settle(bridge)
        if self._current is bridge:
            logger.info("the server is going away: new requests go to a new connection")
            self._current = None
            if self._group is not None:
                self._group.start_soon(self._reconnect_now)

    async def _reconnect_now(self) -> None:
        try:
            await self._live()
        except anyio.BrokenResourceError as exc:  # the next request tries again
            logger.info("no new connection after GOAWAY: %s", exc)

    def _settle(self, bridge: SessionBridge) -> None:
        """``bridge`` is ending (once counted): short-lived, it was a failed attempt."""
        opened = self._opened.pop(bridge, None)
        if opened is None:
            return
        if anyio.current_time() - opened < RECONNECT_DELAY_MAX:
            self._failures += 1
        else:
            self._failures = 0

    async def _live(self) -> SessionBridge:
        """The connection for a new request: the current one, or a new one (replaying
        the session's handshake), with backoff between failed attempts."""
        current = self._current
        if current is not None and _usable(current):
            return current
        async with self._lock:
            current = self._current
            if current is not None and _usable(current):
                return current
            error: Exception | None = None
            for _ in range(RECONNECT_ATTEMPTS):
                if self._failures:
                    delay = min(RECONNECT_DELAY * 2 ** (self._failures - 1), RECONNECT_DELAY_MAX)
                    await anyio.sleep(delay * random.uniform(0.5, 1.5))
                try:
                    bridge = await self._connect()
                    with anyio.fail_after(self._handshake_timeout):
                        await self._replay(bridge)
                except (OSError, HandshakeError, TimeoutError, anyio.BrokenResourceError) as exc:
                    self._failures += 1
                    error = exc
                    logger.info("reconnecting failed (attempt %d): %s", self._failures, exc)
                    continue
                if not _usable(bridge):
                    # Sent away already (counted as a failed attempt when it was): next.
                    error = HandshakeError("the server sent the new connection away")
                    continue
                self._current = bridge
                return bridge
            raise anyio.BrokenResourceError(f"no connection to the server: {error}")

    async def _replay(self, bridge: SessionBridge) -> None:
        if self._initialize is None or self._initialized is None:
            return  # no handshake completed yet: the SDK's own initialize is still to come
        await self._ask(bridge, self._initialize)
        await bridge.send(SessionMessage(message=self._initialized))
        for request in (self._log_level, *self._subscriptions.values()):
            if request is not None:
                await self._ask(bridge, request)

    async def _ask(self, bridge: SessionBridge, request: JSONRPCRequest) -> None:
        """Send ``request`` again under an id of our own and wait for its answer."""
        self._replays += 1
        copy = request.model_copy(update={"id": f"mcp-ws-replay-{self._replays}"})
        answer = _Answer()
        with routing(answer):
            await bridge.send(SessionMessage(message=copy))
        await answer.done.wait()
        error = answer.message.get("error") if answer.message is not None else None
        if isinstance(error, Mapping):
            raise HandshakeError(f"replaying {request.method} failed: {error.get('message')}")

    # ------------------------------------------------------------------ SDK -> wire

    async def send(self, item: SessionMessage) -> None:
        """Route one message from the SDK to the connection it belongs on."""
        message = item.message
        if isinstance(message, JSONRPCRequest):
            live = self._current  # `_live`'s first step, without a coroutine
            if live is None or not _usable(live):
                live = await self._live()  # replays what was remembered before this one
            self._remember(message)
            await live.send(item)
            return
        bridge = self._owner(message, item.metadata)
        if bridge is None:
            if isinstance(message, JSONRPCNotification):
                self._remember(message)
                current = self._current
                if current is not None and _usable(current):
                    await current.send(item)
                    return
            logger.debug("dropped %s: its connection is gone", type(message).__name__)
            return
        await bridge.send(item)

    def _owner(self, message: object, metadata: object) -> SessionBridge | None:
        """The connection a message about an earlier request must go on, if any."""
        if isinstance(message, JSONRPCNotification):
            params = message.params or {}
            if message.method == "notifications/cancelled":
                return self._find(own=params.get("requestId"))
            if isinstance(metadata, ServerMessageMetadata):
                return self._find(peer=metadata.related_request_id)
            return None
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            return self._find(peer=message.id)
        return None

    def _find(self, *, own: object = None, peer: object = None) -> SessionBridge | None:
        for bridge in self._bridges:
            if own is not None and bridge.calls.own(own) is not None:
                return bridge
            if peer is not None and bridge.calls.peer(peer) is not None:
                return bridge
        return None

    def _remember(self, message: JSONRPCRequest | JSONRPCNotification) -> None:
        """Keep what a new connection must replay."""
        method = message.method
        if method == "initialize" and isinstance(message, JSONRPCRequest):
            self._initialize = message
        elif method == "notifications/initialized" and isinstance(message, JSONRPCNotification):
            self._initialized = message
        elif method == "logging/setLevel" and isinstance(message, JSONRPCRequest):
            self._log_level = message
        elif method in ("resources/subscribe", "resources/unsubscribe"):
            uri = str((message.params or {}).get("uri", ""))
            if method == "resources/subscribe" and isinstance(message, JSONRPCRequest):
                self._subscriptions[uri] = message
            else:
                self._subscriptions.pop(uri, None)

    def _resend_later(self, request: JSONRPCRequest, route: Route | None) -> None:
        """A request the server refused unprocessed: send it again on a live connection
        (with its route: a streaming call keeps reading its own deltas). A replayed
        request refused is not sent again: the refusal is its answer, and that
        connection attempt failed."""
        if isinstance(route, _Answer):
            error = {"code": REQUEST_REFUSED, "message": "refused unprocessed"}
            route.take({"jsonrpc": "2.0", "id": request.id, "error": error}, 0)
            return
        assert self._group is not None
        self._group.start_soon(self._resend, request, route)

    async def _resend(self, request: JSONRPCRequest, route: Route | None) -> None:
        count = self._resends.pop(request.id, 0) + 1
        if count > RESEND_LIMIT:
            message = f"refused unprocessed by {count} connections in a row"
            self._answer(request, REQUEST_REFUSED, message)
            return
        if len(self._resends) >= _RESENDS_KEPT:
            self._resends.clear()  # old entries: requests long answered
        self._resends[request.id] = count
        try:
            bridge = await self._live()
            if route is None:
                await bridge.send(SessionMessage(message=request))
            else:
                with routing(route):
                    await bridge.send(SessionMessage(message=request))
        except anyio.BrokenResourceError as exc:
            self._answer(request, CONNECTION_CLOSED, str(exc))

    def _answer(self, request: JSONRPCRequest, code: int, message: str) -> None:
        """Answer ``request`` here, with an error."""
        error = ErrorData(code=code, message=message)
        answer = JSONRPCError(jsonrpc="2.0", id=request.id, error=error)
        self.inbox.put(SessionMessage(message=answer), None, 0, 0)


def _usable(bridge: SessionBridge) -> bool:
    mux = bridge.mux
    return mux is not None and mux.accepting_streams  # which implies not closed


class HandoverReadStream(BridgeReadStream):
    """The SDK's read stream over a `Handover`: its shared inbox, and its `bridge` is the
    connection new requests go to."""

    def __init__(self, handover: Handover) -> None:
        super().__init__(handover.inbox, lambda: handover.bridge)
        self.handover = handover
