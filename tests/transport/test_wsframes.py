"""The WebSocket frame fast path against ``websockets`` alone.

`FrameReader` parses simple data frames itself and gives everything else to the
``websockets`` protocol. Whatever the frames and however TCP splits them, a connection
must see exactly what ``websockets`` alone would make of the same bytes: the same
messages in the same order, the same replies (pongs, the close handshake), the same
close code when the peer misbehaves. The property test below checks that on both sides
(a server reads masked frames, a client unmasked ones), and the handshake tests that
frames arriving in the same read as the HTTP head are not lost or misparsed.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from mcp_ws.transport.tcp import AsyncioSocketStream, connect_tcp, create_tcp_listener
from mcp_ws.transport.websocket import WebSocket, open_websocket
from mcp_ws.transport.wsframes import FrameReader, MaskKeys, encode_frame

MAX_SIZE = 1000

Message = bytes | str


def reference(protocol: Protocol, chunks: list[bytes], eof: bool) -> list[Message]:
    """What ``websockets`` alone makes of ``chunks``: its frames joined into messages."""
    messages: list[Message] = []
    parts: list[bytes] = []
    text = False
    for chunk in [*chunks, None] if eof else chunks:
        if chunk is None:
            protocol.receive_eof()
        else:
            protocol.receive_data(chunk)
        for event in protocol.events_received():
            assert isinstance(event, Frame)
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                text, parts = event.opcode is Opcode.TEXT, []
            elif event.opcode is not Opcode.CONT:
                continue
            parts.append(bytes(event.data))
            if event.fin:
                data = b"".join(parts)
                messages.append(data.decode("utf-8", "surrogateescape") if text else data)
    return messages


def ours(protocol: Protocol, chunks: list[bytes], eof: bool) -> list[Message]:
    reader = FrameReader(protocol)
    messages: list[Message] = []
    for chunk in chunks:
        reader.feed(chunk, messages)
    if eof:
        reader.feed_eof(messages)
    return messages


def fresh(side: str) -> Protocol:
    if side == "server":
        return ServerProtocol(state=State.OPEN, max_size=MAX_SIZE)
    return ClientProtocol(None, state=State.OPEN, max_size=MAX_SIZE)  # type: ignore[arg-type]


def replies(side: str, data: list[bytes]) -> list[tuple[Opcode, bytes, bool]]:
    """The frames in what ``side`` sent, parsed by a peer (a client's are masked)."""
    peer = fresh("client" if side == "server" else "server")
    peer.max_message_size = None
    peer.receive_data(b"".join(data))
    return [
        (f.opcode, bytes(f.data), f.fin) for f in peer.events_received() if isinstance(f, Frame)
    ]


def outcome(side: str, protocol: Protocol) -> tuple[object, ...]:
    return (
        protocol.state,
        protocol.close_sent and (protocol.close_sent.code, protocol.close_sent.reason),
        protocol.close_rcvd and (protocol.close_rcvd.code, protocol.close_rcvd.reason),
        replies(side, [d for d in protocol.data_to_send() if d]),
    )


def frame_bytes(opcode: int, payload: bytes, *, fin: bool, masked: bool, bits: int = 0) -> bytes:
    """A frame as a peer would send it; ``bits`` can set reserved bits (RSV1-3)."""
    first = (0x80 if fin else 0) | bits | opcode
    length = len(payload)
    mask = 0x80 if masked else 0
    if length < 126:
        head = struct.pack("!BB", first, mask | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask | 127, length)
    if not masked:
        return head + payload
    key = b"\x01\x82\x13\xf4"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


payloads = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"x" * 125, b"y" * 126, b"z" * 300, b"w" * MAX_SIZE, b"v" * (MAX_SIZE + 1)]),
)
text = st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass"))


@st.composite
def frame(draw: st.DrawFn, masked: bool) -> bytes:
    kind = draw(
        st.sampled_from(
            ["binary"] * 6 + ["text"] * 2 + ["ping", "pong", "fragments", "close", "bad"]
        )
    )
    if kind == "binary":
        return frame_bytes(2, draw(payloads), fin=True, masked=masked)
    if kind == "text":
        return frame_bytes(1, draw(text), fin=True, masked=masked)
    if kind in ("ping", "pong"):
        size = draw(st.sampled_from([0, 5, 125, 126]))
        return frame_bytes(9 if kind == "ping" else 10, b"p" * size, fin=True, masked=masked)
    if kind == "fragments":
        parts = draw(st.lists(st.binary(max_size=10), min_size=1, max_size=3))
        out = [frame_bytes(2, parts[0], fin=len(parts) == 1, masked=masked)]
        out += [
            frame_bytes(0, part, fin=i == len(parts) - 1, masked=masked)
            for i, part in enumerate(parts[1:], 1)
        ]
        return b"".join(out)
    if kind == "close":
        code = draw(st.sampled_from([1000, 1001, 4000]))
        return frame_bytes(8, struct.pack("!H", code) + b"bye", fin=True, masked=masked)
    bad = draw(st.sampled_from(["rsv", "opcode", "mask", "cont", "unfinished ping"]))
    if bad == "rsv":
        return frame_bytes(2, b"rsv", fin=True, masked=masked, bits=0x40)
    if bad == "opcode":
        return frame_bytes(3, b"op", fin=True, masked=masked)
    if bad == "mask":
        return frame_bytes(2, b"mask", fin=True, masked=not masked)
    if bad == "cont":
        return frame_bytes(0, b"orphan", fin=True, masked=masked)
    return frame_bytes(9, b"frag", fin=False, masked=masked)


@st.composite
def conversation(draw: st.DrawFn) -> tuple[str, list[bytes], bool]:
    side = draw(st.sampled_from(["server", "client"]))
    data = b"".join(draw(st.lists(frame(side == "server"), max_size=8)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return side, [c for c in chunks if c], draw(st.booleans())


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation())
def test_same_as_websockets_alone(case: tuple[str, list[bytes], bool]) -> None:
    side, chunks, eof = case
    theirs_protocol, ours_protocol = fresh(side), fresh(side)
    expected = reference(theirs_protocol, chunks, eof)
    got = ours(ours_protocol, chunks, eof)
    assert got == expected
    assert outcome(side, ours_protocol) == outcome(side, theirs_protocol)


def test_simple_frames_never_reach_the_protocol() -> None:
    """The fast path is taken: a batch of simple frames split anywhere leaves the
    protocol untouched (its parser would have produced events)."""
    protocol = fresh("server")
    reader = FrameReader(protocol)
    data = b"".join(frame_bytes(2, bytes([i]) * i, fin=True, masked=True) for i in range(200))
    data += frame_bytes(1, "é".encode(), fin=True, masked=True)
    messages: list[Message] = []
    for start in range(0, len(data), 7):
        reader.feed(data[start : start + 7], messages)
    assert messages == [bytes([i]) * i for i in range(200)] + ["é"]
    assert not reader.raw
    assert not reader.fed  # so the WebSocket never asks the protocol for replies
    assert reader.buffered == 0
    assert protocol.reader.buffer == b""  # the protocol never saw a byte


def test_a_ping_is_answered_and_the_fast_path_goes_on() -> None:
    protocol = fresh("client")
    reader = FrameReader(protocol)
    messages: list[Message] = []
    data = frame_bytes(2, b"a", fin=True, masked=False)
    data += frame_bytes(9, b"hi", fin=True, masked=False)
    data += frame_bytes(2, b"b", fin=True, masked=False)
    reader.feed(data, messages)
    assert messages == [b"a", b"b"]
    assert not reader.raw
    assert reader.fed  # the protocol has a reply: the WebSocket must take it
    assert replies("client", protocol.data_to_send()) == [(Opcode.PONG, b"hi", True)]


def test_an_oversized_frame_fails_at_its_header() -> None:
    """The limit is checked before the payload arrives (no buffering up to 2**63)."""
    protocol = fresh("server")
    reader = FrameReader(protocol)
    messages: list[Message] = []
    head = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**62)
    reader.feed(head + b"\x00\x00\x00\x00", messages)
    assert reader.raw
    assert reader.buffered == 0
    assert protocol.close_sent is not None
    assert protocol.close_sent.code == 1009


def test_a_big_frame_in_many_reads_is_joined_once() -> None:
    protocol = ServerProtocol(state=State.OPEN, max_size=None)
    reader = FrameReader(protocol)
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = frame_bytes(2, payload, fin=True, masked=True)
    messages: list[Message] = []
    for start in range(0, len(data), 65536):
        reader.feed(data[start : start + 65536], messages)
        if start + 65536 < len(data):
            assert reader.buffered == start + 65536
            assert not messages
    assert messages == [payload]
    assert not reader.raw


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_matches_websockets(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    assert encode_frame(payload, text=False, keys=None) == Frame(Opcode.BINARY, payload).serialize(
        mask=False
    )
    assert encode_frame(payload, text=True, keys=None) == Frame(Opcode.TEXT, payload).serialize(
        mask=False
    )
    masked = encode_frame(payload, text=False, keys=MaskKeys())
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.receive_data(masked)
    (event,) = server.events_received()
    assert isinstance(event, Frame)
    assert (event.opcode, bytes(event.data), event.fin) == (Opcode.BINARY, payload, True)


def test_mask_keys_are_fresh() -> None:
    keys = MaskKeys()
    taken = [keys.take() for _ in range(600)]  # more than one batch from the OS
    assert all(len(key) == 4 for key in taken)
    assert len(set(taken)) > 590  # 32 random bits each: repeats are rare


# ---------------------------------------------------------------- the handshake's tail


Script = Callable[[anyio.abc.SocketStream], Awaitable[None]]


def _switching(request: bytes) -> bytes:
    """The 101 response to a client's handshake ``request``."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Protocol: mcp-ws.v1\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key.decode()).encode() + b"\r\n\r\n"
    )


@asynccontextmanager
async def hand_server(script: Script) -> AsyncIterator[WebSocket]:
    """A server written by hand over TCP (``script`` reads the request and writes the
    bytes it likes); yields our client's open WebSocket to it."""
    listener = await create_tcp_listener("127.0.0.1", 0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await script(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve, tg)
        ws = await open_websocket(
            f"ws://127.0.0.1:{port}", subprotocols=["mcp-ws.v1"], max_size=None
        )
        try:
            yield ws
        finally:
            await ws.aclose()
            tg.cancel_scope.cancel()


async def read_request(stream: anyio.abc.SocketStream) -> bytes:
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive()
    return request


@pytest.mark.anyio
@pytest.mark.parametrize("split", ["one read", "inside the blank line", "inside a frame"])
async def test_frames_behind_the_handshake_arrive(split: str) -> None:
    """The server's 101 and its first frames may come in one read, or split anywhere:
    the client hands websockets the HTTP head alone and reads every frame."""
    first = frame_bytes(2, b"first", fin=True, masked=False)
    second = frame_bytes(2, b"second" * 30, fin=True, masked=False)

    async def script(stream: anyio.abc.SocketStream) -> None:
        head = _switching(await read_request(stream))
        data = head + first + second
        cut = {
            "one read": len(data),
            "inside the blank line": len(head) - 2,
            "inside a frame": len(head) + len(first) + 3,
        }[split]
        await stream.send(data[:cut])
        await anyio.sleep(0.05)  # the client reads the first part alone
        if cut < len(data):
            await stream.send(data[cut:])
        await anyio.sleep(5)

    with anyio.fail_after(10):
        async with hand_server(script) as ws:
            assert await ws.receive() == b"first"
            assert await ws.receive() == b"second" * 30


@pytest.mark.anyio
async def test_a_ping_behind_the_handshake_is_answered_by_the_first_receive() -> None:
    """A ping in the same read as the 101 is answered as soon as the application reads,
    not after the next bytes arrive (the peer here sends nothing more until the pong)."""
    pong = anyio.Event()

    async def script(stream: anyio.abc.SocketStream) -> None:
        head = _switching(await read_request(stream))
        await stream.send(head + frame_bytes(0x9, b"hi", fin=True, masked=False))
        reply = b""
        while len(reply) < 8:  # a masked pong of 2 bytes: 2 + 4 + 2
            reply += await stream.receive()
        assert reply[0] == 0x8A  # FIN, PONG
        assert reply[1] == 0x80 | 2  # masked, 2 bytes
        assert bytes(b ^ reply[2 + i % 4] for i, b in enumerate(reply[6:8])) == b"hi"
        pong.set()
        await stream.send(frame_bytes(2, b"after", fin=True, masked=False))
        await anyio.sleep(5)

    with anyio.fail_after(10):
        async with hand_server(script) as ws:
            assert await ws.receive() == b"after"
            assert pong.is_set()


@pytest.mark.anyio
async def test_a_size_limit_lowered_after_the_handshake_holds_on_the_fast_path() -> None:
    """``set_max_size`` applies to the frames that follow: a plain frame over the new
    limit fails the connection with 1009 (the fast path must not keep the old limit)."""
    close_code: list[int] = []

    async def script(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_switching(await read_request(stream)))
        await anyio.sleep(0.2)  # the client lowers its limit meanwhile
        await stream.send(frame_bytes(2, b"x" * 200, fin=True, masked=False))
        reply = b""
        while len(reply) < 8:  # a masked close frame with its 2-byte code
            reply += await stream.receive()
        assert reply[0] == 0x88  # FIN, CLOSE
        code = bytes(b ^ reply[2 + i % 4] for i, b in enumerate(reply[6:8]))
        close_code.append(struct.unpack("!H", code)[0])
        await anyio.sleep(5)

    with anyio.fail_after(10):
        async with hand_server(script) as ws:
            ws.set_max_size(100)
            assert await ws.receive() is None
    assert close_code == [1009]


# ---------------------------------------------------------------- the pump


@pytest.mark.anyio
async def test_the_pump_delivers_in_order_answers_pings_and_ends_with_the_close() -> None:
    """Messages in one read and across reads, a ping in between (answered while the
    pump runs), then the close handshake, which ends the pump."""
    got: list[bytes | str] = []
    heard: list[tuple[Opcode, bytes, bool]] = []

    async def script(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_switching(await read_request(stream)))
        burst = b"".join(frame_bytes(2, b"%d" % i, fin=True, masked=False) for i in range(50))
        await stream.send(burst + frame_bytes(9, b"are you there", fin=True, masked=False))
        for i in range(50, 60):
            await stream.send(frame_bytes(2, b"%d" % i, fin=True, masked=False))
        peer = ServerProtocol(state=State.OPEN, max_size=None)
        while not any(f[0] is Opcode.PONG for f in heard):
            peer.receive_data(await stream.receive())
            heard.extend(
                (f.opcode, bytes(f.data), f.fin)
                for f in peer.events_received()
                if isinstance(f, Frame)
            )
        close = frame_bytes(8, struct.pack("!H", 1000), fin=True, masked=False)
        await stream.send(frame_bytes(1, b"last", fin=True, masked=False) + close)
        while not any(f[0] is Opcode.CLOSE for f in heard):  # the close reply
            peer.receive_data(await stream.receive())
            heard.extend(
                (f.opcode, bytes(f.data), f.fin)
                for f in peer.events_received()
                if isinstance(f, Frame)
            )
        # then the server closes TCP (the client waits for that)

    with anyio.fail_after(10):
        async with hand_server(script) as ws:
            await ws.pump(got.append)
    assert got == [b"%d" % i for i in range(60)] + ["last"]
    assert heard[0] == (Opcode.PONG, b"are you there", True)
    assert (Opcode.CLOSE, struct.pack("!H", 1000), True) in heard
    assert ws.close_code == 1000


@pytest.mark.anyio
async def test_direct_writes_go_on_after_a_ping_and_stop_at_close(anyio_backend: str) -> None:
    """The pump takes the pong the protocol owes for a ping and goes back to the fast
    path: direct writes stay allowed (asyncio's TCP stream), each data message reaches
    the peer once and in order, with the pong. After ``close()`` they are refused."""
    heard: list[tuple[Opcode, bytes]] = []
    pumping, pinged, seen_all = anyio.Event(), anyio.Event(), anyio.Event()

    async def script(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_switching(await read_request(stream)))
        await stream.send(frame_bytes(2, b"before", fin=True, masked=False))
        await pumping.wait()  # the ping comes while the pump runs
        await stream.send(frame_bytes(9, b"ping", fin=True, masked=False))
        await stream.send(frame_bytes(2, b"after", fin=True, masked=False))
        peer = ServerProtocol(state=State.OPEN, max_size=None)
        with anyio.move_on_after(8):
            while len([f for f in heard if f[0] is not Opcode.PONG]) < 3:
                peer.receive_data(await stream.receive())
                heard.extend(
                    (f.opcode, bytes(f.data))
                    for f in peer.events_received()
                    if isinstance(f, Frame)
                )
                if any(f[0] is Opcode.PONG for f in heard):
                    pinged.set()
        seen_all.set()
        await anyio.sleep(5)

    got: list[bytes | str] = []
    allowed: list[bool] = []

    def take(message: bytes | str) -> None:
        got.append(message)
        pumping.set()

    with anyio.fail_after(15):
        async with hand_server(script) as ws, anyio.create_task_group() as tg:
            tg.start_soon(ws.pump, take)
            await pinged.wait()
            for i in range(3):
                allowed.append(ws.can_send_now)
                if allowed[-1]:
                    ws.send_now([b"m%d" % i])
                else:
                    await ws.send([b"m%d" % i])
            await seen_all.wait()
            await ws.close()
            closed_allows = ws.can_send_now
            tg.cancel_scope.cancel()
    assert got == [b"before", b"after"]
    assert heard[0] == (Opcode.PONG, b"ping")
    assert [f for f in heard if f[0] is Opcode.BINARY] == [
        (Opcode.BINARY, b"m0"),
        (Opcode.BINARY, b"m1"),
        (Opcode.BINARY, b"m2"),
    ]
    assert allowed == [anyio_backend == "asyncio"] * 3
    assert closed_allows is False


@pytest.mark.anyio
async def test_an_error_in_the_handler_ends_the_pump_with_it() -> None:
    async def script(stream: anyio.abc.SocketStream) -> None:
        await stream.send(_switching(await read_request(stream)))
        await stream.send(
            b"".join(frame_bytes(2, b"%d" % i, fin=True, masked=False) for i in range(5))
        )
        await anyio.sleep(5)

    got: list[bytes | str] = []

    def handle(message: bytes | str) -> None:
        if len(got) == 2:
            raise ValueError("the third one")
        got.append(message)

    with anyio.fail_after(10):
        async with hand_server(script) as ws:
            with pytest.raises(ValueError, match="the third one"):
                await ws.pump(handle)
    assert got == [b"0", b"1"]


@pytest.mark.anyio
async def test_a_peer_that_pings_and_reads_no_pongs_meets_backpressure() -> None:
    """Pongs the peer does not read pile up unsent; past REPLY_BACKLOG the client stops
    reading, so the peer's own sends block instead of the client's memory growing."""
    ping = frame_bytes(9, b"p" * 125, fin=True, masked=False)
    batch = ping * 256  # 33 KiB
    limit = 8 * 1024 * 1024
    sent = 0
    blocked = False

    async def script(stream: anyio.abc.SocketStream) -> None:
        nonlocal sent, blocked
        raw: socket.socket = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        await stream.send(_switching(await read_request(stream)))
        while sent < limit:  # never reads the pongs
            with anyio.move_on_after(2) as waited:
                await stream.send(batch)
            if waited.cancelled_caught:
                blocked = True
                return
            sent += len(batch)

    with anyio.fail_after(60):
        async with hand_server(script) as ws, anyio.create_task_group() as tg:
            tg.start_soon(ws.pump, lambda message: None)
            while not blocked and sent < limit:
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert blocked, f"the client read {sent:,} bytes of pings without sending the pongs"
    assert sent < limit


def test_push_mode_hands_over_what_was_buffered_first() -> None:
    """asyncio's TCP stream only (trio's has no push mode; the pump tests above run
    there over ``receive``): bytes that arrived before `set_receiver` come first, then
    each arrival, then ``b""`` at the end; ``None`` goes back to buffering."""

    async def main() -> None:
        seen: list[bytes] = []

        async def peer(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.send(b"early")
                await anyio.sleep(0.05)
                await stream.send(b"late")
                await anyio.sleep(0.05)
                await stream.send(b"after")
                await anyio.sleep(0.05)
                await stream.send_eof()
                await anyio.sleep(5)  # until the test is done with it

        listener = await create_tcp_listener("127.0.0.1", 0)
        port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, peer, tg)
            stream = await connect_tcp("127.0.0.1", port)
            assert isinstance(stream, AsyncioSocketStream)
            await anyio.sleep(0.03)  # "early" is buffered
            assert stream.buffered == 5
            stream.set_receiver(seen.append)
            assert seen == [b"early"]
            assert stream.buffered == 0
            await anyio.sleep(0.05)
            assert seen == [b"early", b"late"]
            stream.set_receiver(None)
            assert await stream.receive() == b"after"
            stream.set_receiver(seen.append)
            with anyio.fail_after(5):
                while seen[-1] != b"":
                    await anyio.sleep(0.01)
            assert seen == [b"early", b"late", b""]
            await stream.aclose()
            tg.cancel_scope.cancel()

    anyio.run(main, backend="asyncio")
