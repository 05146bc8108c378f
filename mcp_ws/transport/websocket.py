"""WebSocket over an anyio byte stream, driven by the ``websockets`` sans-I/O protocol.

``websockets`` has asyncio and trio layers but no anyio one; its ``ClientProtocol`` and
``ServerProtocol`` do the parsing, so this module only moves bytes, which lets one code
path serve both backends. It speaks *messages*: the mux above never sees WebSocket frames.
"""

from __future__ import annotations

import contextlib
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol as _Protocol

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI, NegotiationError
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ..protocol.constants import COMPAT_SUBPROTOCOL, SUBPROTOCOL
from ..protocol.errors import HandshakeError
from ..protocol.reasons import close_reason
from .policy import Refusal, select_subprotocol
from .siblings import Handoff
from .tcp import connect_tcp
from .wsframes import FrameReader, MaskKeys, encode_frame

__all__ = ["HandshakeError", "MessageChannel", "WebSocket", "accept_websocket", "open_websocket"]

_READ_SIZE = 65536
REPLY_BACKLOG = 65536
"""Bytes of replies (pongs) the pump holds unsent before it stops reading the socket."""
# websockets' states as globals: an enum member reached through its class costs a call of
# the enum metaclass's __getattr__ hook on CPython 3.11, and these are asked per message.
_OPEN, _CLOSED = State.OPEN, State.CLOSED

_TRANSPORT_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


class MessageChannel(_Protocol):
    """What the mux needs from a WebSocket: whole messages in, batches of messages out.

    Implemented by `WebSocket` (our own handshake over TCP/TLS) and by the ASGI adapter.
    """

    subprotocol: str | None

    async def receive(self) -> bytes | str | None:
        """The next message (bytes for binary, str for text); ``None`` once closed."""
        ...

    async def send(self, messages: Sequence[bytes | str]) -> None:
        """Send messages in order (binary for bytes, text for str)."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (idempotent)."""
        ...

    async def aclose(self) -> None:
        """Release the transport at once."""
        ...


class WebSocket:
    """One open WebSocket (client or server side) on an anyio byte stream.

    One task may call `receive` while another calls `send`; writes are serialised.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: Protocol,
        *,
        subprotocol: str | None,
        request: Request | None = None,
        received: bytes = b"",
    ) -> None:
        self.subprotocol = subprotocol
        self.request = request  # the handshake request (server side)
        self._stream = stream
        self._protocol = protocol
        self._send_lock = anyio.Lock()
        self._writers = 0  # tasks holding or awaiting _send_lock (read per direct write)
        self._closing = False  # close() was called: the protocol's state is asked again
        self._messages: deque[bytes | str] = deque()
        self._eof = False
        self._frames = FrameReader(protocol)
        self._keys = MaskKeys() if protocol.side is Side.CLIENT else None
        if received:  # what arrived right behind the handshake
            self._frames.feed(received, self._messages)
        self._replies_due = bool(received)  # sent by the first receive (or the pump)

    def set_max_size(self, size: int) -> None:
        """Largest message accepted from now on (the peer is failed with 1009 beyond it)."""
        self._protocol.max_message_size = size
        self._frames.limits_changed()

    @property
    def close_code(self) -> int | None:
        """The close code received from the peer (1006 if the TCP connection just dropped)."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received from the peer."""
        return self._protocol.close_reason

    async def receive(self) -> bytes | str | None:
        """The next whole message, or ``None`` once the connection is closed."""
        if self._replies_due:  # a pong for a ping that came with the handshake
            self._replies_due = False
            with contextlib.suppress(anyio.BrokenResourceError):
                await self._flush(self._protocol.data_to_send())
        while not self._messages:
            if self._eof:
                return None
            try:
                data = await self._stream.receive(_READ_SIZE)
            except _TRANSPORT_ERRORS:
                data = b""
            if data:
                self._frames.feed(data, self._messages)
            else:
                self._frames.feed_eof(self._messages)
                self._eof = True
            with contextlib.suppress(anyio.BrokenResourceError):
                await self._flush(self._protocol.data_to_send())  # pongs, the close reply
            if self._protocol.state is _CLOSED:
                self._eof = True
        return self._messages.popleft()

    async def pump(self, on_message: Callable[[bytes | str], None]) -> None:
        """Call ``on_message`` with every message, in order, until the connection is
        closed; an exception from it ends the pump and is raised here.

        Over asyncio's TCP stream (`AsyncioSocketStream.set_receiver`) each message is
        handled in the socket's callback, in the event-loop step that read it: a task
        hop sooner than `receive`. This task then only sends what the protocol answers
        (pongs, the close reply). Elsewhere (trio, TLS) it is a loop over `receive`.
        ``on_message`` must not block.
        """
        set_receiver = getattr(self._stream, "set_receiver", None)
        if set_receiver is None:
            while (message := await self.receive()) is not None:
                on_message(message)
            return
        while self._messages:  # what came with the handshake
            on_message(self._messages.popleft())
        # The callback's state: its own names, rebound with nonlocal (the list is reused).
        nudge = anyio.Event()  # set when this task has something to do
        failure: Exception | None = None  # raised by on_message: this task raises it
        replies: list[bytes] = []  # what the protocol answered, for this task to send
        backlog = 0  # bytes in replies
        paused = False  # reading stopped until the replies are sent
        messages: list[bytes | str] = []

        def received(data: bytes) -> None:
            nonlocal nudge, failure, backlog, paused
            try:
                if data:
                    self._frames.feed(data, messages)
                elif not self._eof:
                    self._frames.feed_eof(messages)
                    self._eof = True
                for message in messages:
                    on_message(message)
            except Exception as exc:  # raised by the pump's task
                failure = exc
                set_receiver(None)
            finally:
                messages.clear()
            answer: list[bytes] = []
            closed = False
            frames = self._frames
            if frames.fed:  # else data frames only: the protocol has nothing to say
                answer = self._protocol.data_to_send()
                if answer:
                    replies.extend(answer)
                    backlog += sum(map(len, answer))
                    if backlog > REPLY_BACKLOG:
                        # A peer that sends pings and reads no pongs: stop reading until
                        # they are sent (bytes wait in the stream, then in TCP).
                        set_receiver(None)
                        paused = True
                closed = self._protocol.state is _CLOSED
                frames.settled()  # replies taken: the fast path again, while open
            if answer or failure is not None or self._eof or closed:
                nudge.set()

        replies.extend(self._protocol.data_to_send())  # a pong for a ping that came early
        self._replies_due = False
        self._frames.settled()  # its replies are taken: the fast path, while open
        if replies:
            nudge.set()
        set_receiver(received)
        try:
            while True:
                await nudge.wait()
                nudge = anyio.Event()
                if failure is not None:
                    raise failure
                writes, replies[:] = list(replies), []
                backlog = 0
                with contextlib.suppress(anyio.BrokenResourceError):
                    await self._flush(writes)  # a dead socket ends below
                if paused and failure is None:
                    paused = False
                    set_receiver(received)  # what waited meanwhile comes first
                if self._eof or self._protocol.state is _CLOSED:
                    self._eof = True
                    return
        finally:
            set_receiver(None)

    async def send(self, messages: Sequence[bytes | str]) -> None:
        """Send whole messages in one write (raises ``anyio.BrokenResourceError`` if closed)."""
        if self._protocol.state is not _OPEN:
            raise anyio.BrokenResourceError("the WebSocket is closed")
        await self._flush(self._encode(messages))

    def _encode(self, messages: Sequence[bytes | str]) -> list[bytes]:
        """What the protocol has queued (pongs), then a frame per message."""
        writes = self._protocol.data_to_send() if self._frames.fed else []
        keys = self._keys
        for message in messages:
            if isinstance(message, str):
                writes.append(encode_frame(message.encode(), text=True, keys=keys))
            else:
                writes.append(encode_frame(message, text=False, keys=keys))
        return writes

    @property
    def can_send_now(self) -> bool:
        """Whether `send_now` may be used: open, no write under way, and a byte stream
        that takes bytes without waiting (asyncio's TCP stream; not TLS, not trio)."""
        if (self._frames.fed or self._closing) and self._protocol.state is not _OPEN:
            return False  # only what the protocol was fed, or close(), changes its state
        return not self._writers and getattr(self._stream, "can_send_now", False)

    def send_now(self, messages: Sequence[bytes | str]) -> None:
        """Send whole messages without waiting (check `can_send_now` first)."""
        send_nowait = self._stream.send_nowait  # type: ignore[attr-defined]
        if len(messages) == 1 and not self._frames.fed and type(messages[0]) is bytes:
            # The usual case, a request or a response, and no replies owed: one frame.
            send_nowait(encode_frame(messages[0], text=False, keys=self._keys))
            return
        for chunk in _join(self._encode(messages)):
            send_nowait(chunk)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once); `receive` returns ``None`` when the peer answers."""
        self._closing = True
        if self._protocol.state is _OPEN:
            self._protocol.send_close(code, close_reason(reason))
            await self._flush(self._protocol.data_to_send())

    async def aclose(self) -> None:
        """Close the TCP connection now."""
        self._eof = True
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()

    async def _flush(self, writes: list[bytes]) -> None:
        if not writes:
            return
        # Taken in the order the bytes were taken from the protocol (the lock is FIFO and
        # nothing yields in between); uncontended, without a cancellation check.
        self._writers += 1
        try:
            self._send_lock.acquire_nowait()
        except anyio.WouldBlock:
            try:
                await self._send_lock.acquire()
            except BaseException:
                self._writers -= 1
                raise
        try:
            for chunk in _join(writes):
                if chunk:
                    await self._stream.send(chunk)
                else:
                    await self._half_close()
        except _TRANSPORT_ERRORS as exc:
            self._eof = True
            raise anyio.BrokenResourceError("the connection was lost") from exc
        finally:
            self._send_lock.release()
            self._writers -= 1

    async def _half_close(self) -> None:
        """The protocol says our side of TCP is done (server after the close handshake).

        A TLS stream cannot half-close (``send_eof`` is unsupported), so the EOF goes to the
        TCP stream under it: the session is ``tls_standard_compatible=False`` and the
        WebSocket close handshake already ended the conversation. Without this a TLS
        client would wait out its close timeout for our EOF.
        """
        stream: object = self._stream
        if isinstance(stream, TLSStream):
            stream = stream.transport_stream
        if isinstance(stream, anyio.abc.SocketStream):
            await stream.send_eof()


def _join(writes: list[bytes]) -> list[bytes]:
    """Merge consecutive non-empty writes into one (one syscall); keep EOF markers."""
    if len(writes) == 1 and writes[0]:
        return writes  # the common case: one frame
    out: list[bytes] = []
    run: list[bytes] = []
    for chunk in writes:
        if chunk:
            run.append(chunk)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(b"")
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
    return out


async def _read_handshake(
    stream: anyio.abc.ByteStream, protocol: Protocol, kind: type[Request] | type[Response]
) -> tuple[Request | Response | None, bytes]:
    """Read until the handshake event arrives; return it and the bytes read after it.

    The protocol is given the HTTP head (through its blank line) and nothing after it,
    so the frames behind it reach the WebSocket's `FrameReader` with the protocol's
    parser at a frame boundary. When the event needs more (a refusal's body), the rest
    goes to the protocol too: that conversation has no frames.
    """
    tail = b""  # the last bytes of the head so far: a blank line may span two reads
    in_head = True
    while True:
        try:
            data = await stream.receive(_READ_SIZE)
        except _TRANSPORT_ERRORS:
            data = b""
        rest = b""
        if not data:
            protocol.receive_eof()
        elif not in_head:
            protocol.receive_data(data)
        else:
            window = tail + data
            end = window.find(b"\r\n\r\n")
            if end < 0:
                protocol.receive_data(data)
                tail = window[-3:]
            else:
                cut = end + 4 - len(tail)
                protocol.receive_data(data[:cut])
                rest, in_head = data[cut:], False
        for event in protocol.events_received():
            if isinstance(event, kind):
                return event, rest
        if not data:
            return None, b""
        if rest:
            protocol.receive_data(rest)  # the body of a refusal


async def open_websocket(
    url: str,
    *,
    subprotocols: Sequence[str],
    headers: Mapping[str, str] | None = None,
    ssl: _ssl.SSLContext | None = None,
    max_size: int | None = None,
    handshake_timeout: float = 10.0,
) -> WebSocket:
    """Connect to ``url`` (``ws://`` or ``wss://``) and complete the opening handshake.

    Raises `HandshakeError` (with the HTTP status when the server answered one, or when
    no handshake completed within ``handshake_timeout`` seconds) or ``OSError`` when the
    TCP connection fails.
    """
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"not a WebSocket URL: {url!r}") from exc
    if ssl is None and uri.secure:
        ssl = _ssl.create_default_context()
    protocol = ClientProtocol(
        uri,
        subprotocols=[Subprotocol(p) for p in subprotocols],
        max_size=max_size,
    )
    try:
        with anyio.fail_after(handshake_timeout):
            stream = await connect_tcp(uri.host, uri.port, ssl=ssl if uri.secure else None)
            try:
                request = protocol.connect()
                for name, value in (headers or {}).items():
                    request.headers[name] = value
                protocol.send_request(request)
                await stream.send(b"".join(protocol.data_to_send()))
                response, received = await _read_handshake(stream, protocol, Response)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise
    except TimeoutError as exc:  # the same words as the TypeScript client's
        raise HandshakeError(
            f"no WebSocket handshake with {url} within {handshake_timeout * 1000:g} ms"
        ) from exc
    if response is None or protocol.handshake_exc is not None:
        await stream.aclose()
        failure = protocol.handshake_exc
        if isinstance(failure, InvalidStatus):
            status = failure.response.status_code
            raw = failure.response.body
            body = raw.decode("utf-8", "replace").strip() if raw else ""
            raise HandshakeError(
                f"the server refused the WebSocket handshake: HTTP {status} {body}".strip(),
                status=status,
                body=body,
            ) from failure
        raise HandshakeError(
            f"WebSocket handshake failed: {failure or 'connection closed'}"
        ) from failure
    return WebSocket(stream, protocol, subprotocol=protocol.subprotocol, received=received)


async def accept_websocket(
    stream: anyio.abc.ByteStream,
    *,
    check: Callable[[Request], Awaitable[Refusal | Response | Handoff | None]],
    max_size: int | None,
    handshake_timeout: float = 10.0,
) -> WebSocket | Handoff | None:
    """Run the server side of the handshake on ``stream``.

    ``check(request)`` returns ``None`` to accept, ``(status, text, headers)`` to refuse,
    a whole HTTP ``Response`` to answer a plain request (a page, a health check), or a
    `Handoff` to pass the handshake unanswered to another process (a sibling worker).
    Returns the open WebSocket, the `Handoff` (with the bytes read so far), or ``None``
    (stream closed) when there is none.
    """
    protocol = ServerProtocol(
        subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(COMPAT_SUBPROTOCOL)],
        select_subprotocol=_select_subprotocol,
        max_size=max_size,
    )
    with anyio.move_on_after(handshake_timeout):
        request, received = await _read_handshake(stream, protocol, Request)
        if request is None or not isinstance(request, Request):
            await stream.aclose()
            return None
        refusal = await check(request)
        if isinstance(refusal, Handoff):
            return Handoff(refusal.port, request.serialize() + received)
        if refusal is None:
            response = protocol.accept(request)
        elif isinstance(refusal, Response):
            response = refusal
        else:
            status, text, extra = refusal
            response = protocol.reject(status, text)
            for name, value in extra.items():
                response.headers[name] = value
        protocol.send_response(response)
        try:
            await stream.send(b"".join(w for w in protocol.data_to_send() if w))
        except _TRANSPORT_ERRORS:
            await stream.aclose()
            return None
        if response.status_code != 101:
            await stream.aclose()
            return None
        return WebSocket(
            stream, protocol, subprotocol=protocol.subprotocol, request=request, received=received
        )
    await stream.aclose()
    return None


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    choice = select_subprotocol(offered)
    if choice is None:
        raise NegotiationError("offer subprotocol mcp-ws.v1 (or mcp for JSON text mode)")
    return Subprotocol(choice)
