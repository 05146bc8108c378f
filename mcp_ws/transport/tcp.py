"""TCP byte streams for the WebSocket layer: anyio's on trio, a leaner one on asyncio.

anyio's asyncio ``SocketStream`` turns reading on before every wait and off after it,
which costs two epoll changes per message on each side, and every ``send`` yields to the
event loop once more after the bytes reached the kernel. For small request/response
messages those costs are a large part of a round trip. `AsyncioSocketStream` keeps
reading on and buffers what arrives, pausing the socket only when more than
`READ_BUFFER_HIGH` bytes wait unread, so a peer that floods still meets TCP backpressure.
``send`` returns without yielding once the kernel took every byte, and otherwise waits
until it has; so, as with anyio, nothing is left in user space when ``send`` returns.

On trio (and anywhere asyncio is not the running loop) `connect_tcp` and
`create_tcp_listener` hand out anyio's own streams. Either way callers see
``anyio.abc.SocketStream`` (or ``TLSStream`` over it) and never need to know which.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSStream

__all__ = [
    "READ_BUFFER_HIGH",
    "READ_BUFFER_LOW",
    "AsyncioSocketStream",
    "TCPListener",
    "asyncio_loop",
    "connect_tcp",
    "create_tcp_listener",
    "serve_accepts",
]

logger = logging.getLogger("mcp_ws.transport")

READ_BUFFER_HIGH = 256 * 1024
"""Unread bytes above which the socket stops being read (TCP backpressure takes over)."""
READ_BUFFER_LOW = 64 * 1024
"""Unread bytes at or below which reading resumes."""

HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's recommended connection attempt delay
ACCEPT_BACKOFF = 0.1  # seconds to wait when accept fails for lack of resources
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_TRANSIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop when anyio runs on asyncio here; ``None`` on trio."""
    token = anyio.lowlevel.current_token().native_token
    return token if isinstance(token, asyncio.AbstractEventLoop) else None


class _StreamProtocol(asyncio.Protocol):
    """Buffers what the socket delivers; wakes the one waiting reader and any writers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading = True
        self.at_eof = False
        self.lost = False
        self.exception: Exception | None = None
        self.read_waiter: asyncio.Future[None] | None = None
        self.receiver: Callable[[bytes], None] | None = None  # see set_receiver
        self.writable = asyncio.Event()  # set while the transport takes writes (or is lost)
        self.writable.set()
        self.paused = False  # the same, as a flag: asked before every direct write

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Any unsent byte pauses writing, so send() returns only once the kernel has all.
        transport.set_write_buffer_limits(0)

    def data_received(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver(data if type(data) is bytes else bytes(data))
            return
        self.chunks.append(data if type(data) is bytes else bytes(data))
        self.buffered += len(data)
        if self.buffered > READ_BUFFER_HIGH and self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake_reader()
        if self.receiver is not None:
            self.receiver(b"")
        return True  # keep our side open: the peer half-closed, we may still write

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.exception = exc
        self._wake_reader()
        self.writable.set()
        if self.receiver is not None:
            self.receiver(b"")

    def pause_writing(self) -> None:
        self.paused = True
        self.writable.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.writable.set()

    def _wake_reader(self) -> None:
        waiter = self.read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AsyncioSocketStream(anyio.abc.SocketStream):
    """A TCP stream on an asyncio transport that leaves reading on (see the module doc).

    One task may receive while another sends; concurrent receives raise
    ``anyio.BusyResourceError``. Errors follow anyio's: ``EndOfStream`` after the peer's
    EOF, ``BrokenResourceError`` once the connection is lost, ``ClosedResourceError``
    after `aclose`.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return sock

    @property
    def buffered(self) -> int:
        """Bytes received from the socket and not yet returned by `receive`."""
        return self._protocol.buffered

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Buffered bytes at once (without yielding), else wait for the next arrival."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        protocol = self._protocol
        if not protocol.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if not (protocol.at_eof or protocol.lost):
                if protocol.read_waiter is not None:
                    raise anyio.BusyResourceError("reading from")
                waiter = protocol.read_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    protocol.read_waiter = None
            if not protocol.chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                raise anyio.EndOfStream
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.buffered -= len(chunk)
        if not protocol.reading and protocol.buffered <= READ_BUFFER_LOW and not protocol.lost:
            protocol.reading = True
            self._transport.resume_reading()
        return chunk

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> None:
        """Push mode: the event loop's socket callback calls ``receiver(data)`` with
        each arrival instead of buffering it for `receive`, so it is handled in the loop
        step that read it; ``b""`` marks the end (EOF or loss, possibly twice). Bytes
        already buffered are delivered first, from this call. ``None`` ends push mode.

        The receiver must not block or raise; it sees every byte, so reading never
        pauses: whoever uses it bounds what the peer may send in another way (mcp-ws
        credit)."""
        protocol = self._protocol
        protocol.receiver = receiver
        if receiver is None:
            return
        while protocol.chunks and protocol.receiver is receiver:
            chunk = protocol.chunks.popleft()
            protocol.buffered -= len(chunk)
            receiver(chunk)
        if not protocol.reading and not protocol.lost:
            protocol.reading = True
            self._transport.resume_reading()
        if (protocol.at_eof or protocol.lost) and protocol.receiver is receiver:
            receiver(b"")

    async def send(self, item: bytes) -> None:
        """Hand ``item`` to the kernel; wait only if it could not take it all at once."""
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.exception
        if not protocol.writable.is_set():
            await self._drained()  # an earlier send still drains
        self._transport.write(item)
        if not protocol.writable.is_set():
            await self._drained()

    @property
    def can_send_now(self) -> bool:
        """Whether `send_nowait` may be used: open, and no earlier send still drains."""
        protocol = self._protocol
        return (
            not self._closed
            and not protocol.lost
            and not protocol.paused
            and not self._transport.is_closing()
        )

    def send_nowait(self, item: bytes) -> None:
        """Hand ``item`` to the transport without waiting (check `can_send_now` first).
        What the kernel does not take at once stays buffered, and the next `send`
        waits for it: at most this one write goes beyond the kernel's buffer."""
        self._transport.write(item)

    async def _drained(self) -> None:
        """Wait until the kernel took every buffered byte; raise if the stream went away."""
        await self._protocol.writable.wait()
        if self._closed:
            raise anyio.ClosedResourceError  # aclose() dropped the unsent bytes
        if self._protocol.lost:
            raise anyio.BrokenResourceError from self._protocol.exception

    async def send_eof(self) -> None:
        """Half-close: the peer reads EOF; we can still receive."""
        if not self._transport.is_closing():
            with suppress(OSError):
                self._transport.write_eof()

    async def aclose(self) -> None:
        """Drop the connection at once (unsent bytes are discarded)."""
        self._closed = True
        self._transport.abort()
        await anyio.lowlevel.checkpoint()


async def connect_tcp(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    tls_standard_compatible: bool = False,
) -> anyio.abc.ByteStream:
    """Open a TCP connection (TLS over it with ``ssl``); raises ``OSError`` on failure.

    The certificate is checked against ``host``. The default TLS mode does not require
    the TLS closing handshake, as a WebSocket's own close handshake ends the conversation.
    """
    loop = asyncio_loop()
    if loop is None:
        if ssl is None:
            return await anyio.connect_tcp(host, port)
        return await anyio.connect_tcp(
            host, port, ssl_context=ssl, tls_standard_compatible=tls_standard_compatible
        )
    transport, protocol = await loop.create_connection(
        _StreamProtocol, host, port, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
    )
    stream: anyio.abc.ByteStream = AsyncioSocketStream(transport, protocol)
    if ssl is not None:
        try:
            stream = await TLSStream.wrap(
                stream, hostname=host, ssl_context=ssl, standard_compatible=tls_standard_compatible
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
    return stream


Accept = Callable[[], Awaitable[anyio.abc.SocketStream]]


class TCPListener(anyio.abc.Listener[anyio.abc.SocketStream]):
    """Listens on one or more TCP sockets (one per address ``host`` resolved to).

    `serve` hands each connection to a handler in its own task and keeps accepting when
    ``accept`` fails for lack of file descriptors or memory (it logs and retries after
    `ACCEPT_BACKOFF` seconds) or because the client gave up before it was accepted.
    """

    def __init__(self, listeners: Sequence[anyio.abc.SocketListener]) -> None:
        self.listeners = list(listeners)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.listeners[0].extra_attributes

    async def serve(
        self,
        handler: Callable[[anyio.abc.SocketStream], Any],
        task_group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """Accept forever on every socket, running ``handler(stream)`` per connection."""
        async with AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            async with anyio.create_task_group() as accepting:
                for listener in self.listeners:
                    accepting.start_soon(serve_accepts, _accepter(listener), handler, task_group)

    async def aclose(self) -> None:
        """Stop listening (connections already accepted are not touched)."""
        for listener in self.listeners:
            await listener.aclose()


def _accepter(listener: anyio.abc.SocketListener) -> Accept:
    """``listener.accept``, or on asyncio an accept that yields `AsyncioSocketStream`."""
    loop = asyncio_loop()
    if loop is None:
        return listener.accept
    raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)

    async def accept() -> anyio.abc.SocketStream:
        while True:
            client, _address = await loop.sock_accept(raw)
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                transport, protocol = await loop.connect_accepted_socket(_StreamProtocol, client)
            except OSError:
                client.close()  # that client is already gone: take the next one
                continue
            except BaseException:
                client.close()
                raise
            return AsyncioSocketStream(transport, protocol)

    return accept


async def serve_accepts(
    accept: Accept,
    handler: Callable[[anyio.abc.SocketStream], Any],
    task_group: anyio.abc.TaskGroup,
) -> None:
    """Accept connections until cancelled, starting ``handler`` for each in ``task_group``.

    Resource exhaustion (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) is logged and
    retried after a pause; a connection that died before it was accepted is skipped.
    Any other error ends the loop by raising.
    """
    while True:
        try:
            stream = await accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                logger.warning("accept failed (%s); retrying in %.1f s", exc, ACCEPT_BACKOFF)
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            if exc.errno in _TRANSIENT:
                continue
            raise
        task_group.start_soon(handler, stream)


async def create_tcp_listener(host: str, port: int, *, reuse_port: bool = False) -> TCPListener:
    """Listen on ``host``:``port`` (``port=0`` picks a free one); raises ``OSError``.
    ``reuse_port`` sets SO_REUSEPORT: processes listening on the same port share its
    connections (``mcp-ws serve --workers``)."""
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=reuse_port)
    return TCPListener([cast(anyio.abc.SocketListener, one) for one in multi.listeners])
