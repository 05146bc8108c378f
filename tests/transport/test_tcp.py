"""The TCP layer under the WebSocket: our asyncio stream and the listener, on both backends.

On asyncio the streams are `AsyncioSocketStream`; on trio they are anyio's own. Every
behaviour below must hold either way: bytes in order, EOF and half-close, errors after
close, TCP backpressure against a sender that outruns a reader that does not read.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSListener, TLSStream

from mcp_ws.transport import tcp
from mcp_ws.transport.tcp import (
    READ_BUFFER_HIGH,
    AsyncioSocketStream,
    connect_tcp,
    create_tcp_listener,
    serve_accepts,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


@asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[int]:
    """Serve ``handler`` on a free loopback port (each stream closed after it); yield the port."""

    async def run(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await handler(stream)

    listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, run, tg)
        yield port
        tg.cancel_scope.cancel()


async def receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        data += await stream.receive()
    return bytes(data)


def expected_type(anyio_backend: str) -> type:
    return AsyncioSocketStream if anyio_backend == "asyncio" else anyio.abc.SocketStream


async def test_bytes_go_both_ways_in_order(anyio_backend: str) -> None:
    accepted: list[tuple[anyio.abc.SocketStream, object]] = []

    async def echo(stream: anyio.abc.SocketStream) -> None:
        accepted.append((stream, stream.extra(anyio.abc.SocketAttribute.remote_address)))
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except anyio.EndOfStream:
                pass

    with anyio.fail_after(10):
        async with listening(echo) as port:
            stream = await connect_tcp("127.0.0.1", port)
            async with stream:
                assert isinstance(stream, expected_type(anyio_backend))
                local = stream.extra(anyio.abc.SocketAttribute.local_address)
                assert stream.extra(anyio.abc.SocketAttribute.remote_port) == port
                for n in range(50):
                    message = f"message {n};".encode() * (n + 1)
                    await stream.send(message)
                    assert await receive_exactly(stream, len(message)) == message
            server_side, peer = accepted[0]
            assert isinstance(server_side, expected_type(anyio_backend))
            assert peer == local


async def test_receive_returns_at_most_max_bytes_and_keeps_the_rest() -> None:
    async def send_and_hold(stream: anyio.abc.SocketStream) -> None:
        await stream.send(bytes(range(100)))
        await anyio.sleep(5)

    with anyio.fail_after(10):
        async with listening(send_and_hold) as port, await connect_tcp("127.0.0.1", port) as s:
            head = await s.receive(10)
            assert head == bytes(range(len(head)))
            assert 1 <= len(head) <= 10
            rest = await receive_exactly(s, 100 - len(head))
            assert head + rest == bytes(range(100))
            with pytest.raises(ValueError, match="positive"):
                await s.receive(0)


async def test_half_close_ends_the_peers_reads_but_not_its_writes() -> None:
    async def reply_after_eof(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            got = bytearray()
            try:
                while True:
                    got += await stream.receive()
            except anyio.EndOfStream:
                await stream.send(b"you said " + bytes(got))

    with anyio.fail_after(10):
        async with listening(reply_after_eof) as port:
            stream = await connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(b"hello")
                assert isinstance(stream, anyio.abc.SocketStream)
                await stream.send_eof()
                assert await receive_exactly(stream, 14) == b"you said hello"
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()


async def test_after_aclose_our_side_is_closed_and_the_peer_sees_the_end() -> None:
    seen: list[type[BaseException]] = []
    done = anyio.Event()

    async def read_to_the_end(stream: anyio.abc.SocketStream) -> None:
        try:
            while True:
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            seen.append(type(exc))
        finally:
            await stream.aclose()
            done.set()

    with anyio.fail_after(10):
        async with listening(read_to_the_end) as port:
            stream = await connect_tcp("127.0.0.1", port)
            await stream.send(b"bye")
            await stream.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.send(b"more")
            await done.wait()
    assert len(seen) == 1


async def test_a_second_concurrent_receive_is_refused() -> None:
    async def hold(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(5)
        await stream.aclose()

    with anyio.fail_after(10):
        async with (
            listening(hold) as port,
            await connect_tcp("127.0.0.1", port) as stream,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(stream.receive)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await stream.receive()
            tg.cancel_scope.cancel()


async def test_a_receive_waiting_when_the_stream_is_closed_ends_closed() -> None:
    async def hold(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(5)
        await stream.aclose()

    with anyio.fail_after(10):
        async with listening(hold) as port:
            stream = await connect_tcp("127.0.0.1", port)
            failures: list[BaseException] = []

            async def receive() -> None:
                try:
                    await stream.receive()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await stream.aclose()
            assert len(failures) == 1


async def test_connecting_to_a_closed_port_raises_oserror() -> None:
    listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    await listener.aclose()
    with anyio.fail_after(10), pytest.raises(OSError):
        await connect_tcp("127.0.0.1", port)


async def test_a_reader_that_does_not_read_stops_the_sender(anyio_backend: str) -> None:
    """TCP backpressure: what the server buffers stays bounded while it does not read;
    once it reads, every byte arrives in order."""
    chunk = bytes(range(256)) * 4096  # 1 MiB
    limit = 96  # MiB the sender may try to send
    release = anyio.Event()
    received = hashlib.sha256()
    total = 0
    buffered: list[int] = []
    all_read = anyio.Event()

    async def slow_reader(stream: anyio.abc.SocketStream) -> None:
        nonlocal total
        await release.wait()
        if isinstance(stream, AsyncioSocketStream):
            buffered.append(stream.buffered)
        try:
            while True:
                data = await stream.receive()
                received.update(data)
                total += len(data)
        except anyio.EndOfStream:
            all_read.set()

    sent = 0

    async def sender(stream: anyio.abc.ByteStream) -> None:
        nonlocal sent
        for _ in range(limit):
            await stream.send(chunk)
            sent += 1

    with anyio.fail_after(40):
        async with listening(slow_reader) as port:
            stream = await connect_tcp("127.0.0.1", port)
            async with stream:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sender, stream)
                    # Wait until the sender has made no progress for half a second.
                    last = -1
                    for _ in range(100):
                        await anyio.sleep(0.5)
                        if sent == last:
                            break
                        last = sent
                    stalled_at = sent
                    # A direct write is refused while the kernel holds unsent bytes...
                    blocked_direct = getattr(stream, "can_send_now", None)
                    release.set()
                # ...and allowed again once the sender's last bytes were taken.
                direct_after = getattr(stream, "can_send_now", None)
                await stream.send_eof()
            assert stalled_at < limit // 2, "the sender never met backpressure"
            await all_read.wait()
    expected = hashlib.sha256()
    for _ in range(limit):
        expected.update(chunk)
    assert total == limit * len(chunk)
    assert received.hexdigest() == expected.hexdigest()
    if anyio_backend == "asyncio":
        assert blocked_direct is False
        assert direct_after is True
        # one more read of at most the transport's read size may land past the mark
        assert buffered
        assert buffered[0] <= READ_BUFFER_HIGH + 256 * 1024


async def test_tls_over_our_streams() -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    authority.configure_trust(client_context)

    async def echo_once(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await stream.send(b"secure " + await stream.receive())
            await anyio.sleep(5)  # until cancelled: the client closes first

    tcp_listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(tcp_listener.extra(anyio.abc.SocketAttribute.local_port))
    listener = TLSListener(tcp_listener, server_context, standard_compatible=False)
    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo_once, tg)
            stream = await connect_tcp("127.0.0.1", port, ssl=client_context)
            async with stream:
                assert isinstance(stream, TLSStream)
                await stream.send(b"hello")
                assert await receive_exactly(stream, 12) == b"secure hello"
            tg.cancel_scope.cancel()


async def test_the_accept_loop_outlives_resource_exhaustion_and_aborted_clients(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """EMFILE waits and retries; ECONNABORTED is skipped; anything else ends the loop."""
    outcomes: list[BaseException | str] = [
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ECONNABORTED, "Software caused connection abort"),
        "stream",
        OSError(errno.EBADF, "Bad file descriptor"),
    ]
    handled: list[object] = []

    async def accept() -> anyio.abc.SocketStream:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    async def handler(stream: object) -> None:
        handled.append(stream)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            with pytest.raises(OSError) as caught:
                await serve_accepts(accept, handler, tg)
    assert caught.value.errno == errno.EBADF
    assert handled == ["stream"]
    assert not outcomes
    assert any("retrying" in record.getMessage() for record in caplog.records)


async def test_the_listener_reports_its_address_and_stops_on_aclose() -> None:
    listener = await create_tcp_listener("127.0.0.1", 0)
    assert isinstance(listener, tcp.TCPListener)
    address = listener.extra(anyio.abc.SocketAttribute.local_address)
    assert isinstance(address, tuple)
    host, port = address[:2]
    assert host == "127.0.0.1"
    assert port == listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with anyio.fail_after(10), pytest.raises(OSError):
        await connect_tcp("127.0.0.1", int(port))


async def test_a_client_that_resets_at_once_does_not_stop_the_accept_loop() -> None:
    greeted: list[bool] = []

    async def greet(stream: anyio.abc.SocketStream) -> None:
        try:
            await stream.send(b"hello")
            greeted.append(True)
        except anyio.BrokenResourceError:
            greeted.append(False)  # one of the clients that reset

    with anyio.fail_after(10):
        async with listening(greet) as port:
            for _ in range(5):  # connect and reset (SO_LINGER 0) before the server reads
                rude = socket.socket()
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                rude.connect(("127.0.0.1", port))
                rude.close()
            async with await connect_tcp("127.0.0.1", port) as polite:
                assert await receive_exactly(polite, 5) == b"hello"
    assert True in greeted
