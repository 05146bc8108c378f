"""The WebSocket frames of an open connection: a fast path beside ``websockets``' parser.

``websockets``' sans-I/O parser is a chain of generators that costs more per small frame
than the rest of our receive path together (a quarter of a server's CPU in a round-trip
benchmark). After the handshake almost every frame is the same simple shape: one whole
data message in one frame (FIN set, no reserved bits, masked exactly when the peer is a
client, within the size limit). `FrameReader` parses those itself and hands everything
else to the ``websockets`` protocol, which stays the authority on the rest of RFC 6455:

- a whole control frame (ping, pong, close) goes to the protocol as it stands, so it
  answers pings, runs the closing handshake and discards what follows a close;
- any other frame (a fragment, a reserved bit, a bad opcode or mask bit, one over the
  size limit) switches the reader to *raw* mode: from that frame on, every byte goes to
  the protocol, exactly as if this module were not there. The protocol then fails the
  connection with the close code it always chose.

The protocol only ever receives whole frames before raw mode, so its parser is at a
frame boundary whenever this reader parses. That holds from the start because the
handshake hands the protocol the HTTP head alone (``websocket._read_handshake``).

`encode_frame` builds an outgoing data frame the same way ``websockets`` does, masked
with a fresh random key on the client side.
"""

from __future__ import annotations

import os
import struct
from collections.abc import MutableSequence, Sequence

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

try:
    from websockets.speedups import apply_mask  # websockets' C helper, when built
except ImportError:  # pragma: no cover - the pure-Python one
    from websockets.utils import apply_mask

__all__ = ["FrameReader", "MaskKeys", "encode_frame"]

_FIN_ONLY = 0x80  # FIN set, RSV1-3 clear
_TEXT, _BINARY = int(Opcode.TEXT), int(Opcode.BINARY)
_DATA = frozenset({_TEXT, _BINARY})
_CONTROL = frozenset({int(Opcode.CLOSE), int(Opcode.PING), int(Opcode.PONG)})
_MAX_CONTROL = 125


class FrameReader:
    """Turns received bytes into whole messages (see the module doc).

    ``protocol`` is the open connection's ``websockets`` protocol, whose parser must be
    at a frame boundary. `feed` appends the messages that completed, in order: ``bytes``
    for binary, ``str`` for text (undecodable bytes kept as surrogate escapes). What the
    protocol wants sent back (a pong, the close reply) waits in its ``data_to_send()``.
    """

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol
        self._masked = protocol.side is Side.SERVER  # frames from a client are masked
        self._limit: int | None = None  # the protocol's size limit (None: none)
        self.limits_changed()
        self._pending: list[bytes] = []  # an incomplete frame, in pieces
        self._pending_size = 0
        self._need = 0  # bytes the incomplete frame needs before parsing is worth it
        self._fragments: list[bytes] = []  # a fragmented message, from the protocol
        self._fragment_text = False
        self.raw = False
        self.fed = False
        """Whether the protocol was handed bytes (a control frame, raw mode, the end):
        it may then have events, replies to send, or a new state. Its owner clears it
        once it took the replies and saw the state still open; raw mode keeps it set."""

    def limits_changed(self) -> None:
        """Take the protocol's current size limits (call after changing them): frames
        over them go to the protocol, which fails the connection with 1009."""
        limits = (self._protocol.max_message_size, self._protocol.max_fragment_size)
        self._limit = min((n for n in limits if n is not None), default=None)

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held here (not yet given to anyone)."""
        return self._pending_size

    def settled(self) -> None:
        """The owner took the protocol's replies: while the protocol is open and this
        reader is not in raw mode, it has nothing more to say (clears `fed`)."""
        if not self.raw and self._protocol.state is State.OPEN:
            self.fed = False

    def feed(self, data: bytes, messages: MutableSequence[bytes | str]) -> None:
        """Parse ``data``; append the messages it completed to ``messages``."""
        self._parse(data, messages)
        if self.fed:  # only the protocol's parser makes events
            events = self._protocol.events_received()
            if events:
                self._take(events, messages)

    def feed_eof(self, messages: MutableSequence[bytes | str]) -> None:
        """The peer closed TCP: the protocol sees any incomplete frame, then the end."""
        self.raw = self.fed = True
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
            self._protocol.receive_data(data)
        self._protocol.receive_eof()
        self._take(self._protocol.events_received(), messages)

    def _parse(self, data: bytes, messages: MutableSequence[bytes | str]) -> None:
        if self.raw:
            self._protocol.receive_data(data)
            return
        if self._pending:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need:
                return
            data = b"".join(self._pending)
            self._pending, self._pending_size = [], 0
        protocol = self._protocol
        limit = self._limit
        masked = self._masked
        end = len(data)
        pos = 0
        while pos < end:
            available = end - pos
            if available < 2:
                self._keep(data, pos, 2)
                return
            first, second = data[pos], data[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if available < 4:
                    self._keep(data, pos, 4)
                    return
                (length,) = struct.unpack_from("!H", data, pos + 2)
                head = 4
            elif length == 127:
                if available < 10:
                    self._keep(data, pos, 10)
                    return
                (length,) = struct.unpack_from("!Q", data, pos + 2)
                head = 10
            if masked:
                head += 4
            opcode = first & 0x0F
            if first & 0xF0 != _FIN_ONLY or bool(second & 0x80) != masked:
                plain = False  # a fragment, a reserved bit, or the wrong masking
            elif opcode in _DATA:
                plain = limit is None or length <= limit  # else the protocol sends 1009
            else:
                plain = opcode in _CONTROL and length <= _MAX_CONTROL
            if not plain:
                self.raw = self.fed = True
                protocol.receive_data(data[pos:] if pos else data)
                return
            total = head + length
            if available < total:
                self._keep(data, pos, total)
                return
            if opcode in _CONTROL:
                self.fed = True
                protocol.receive_data(data[pos : pos + total])
                pos += total
                if protocol.state is not State.OPEN:  # a close: the protocol takes the rest
                    self.raw = True
                    if pos < end:
                        protocol.receive_data(data[pos:])
                    return
                continue
            payload = data[pos + head : pos + total]
            if masked:
                payload = apply_mask(payload, data[pos + head - 4 : pos + head])
            if opcode == _BINARY:
                messages.append(payload)
            else:
                messages.append(payload.decode("utf-8", "surrogateescape"))
            pos += total

    def _keep(self, data: bytes, pos: int, need: int) -> None:
        rest = data[pos:] if pos else data
        self._pending = [rest]
        self._pending_size = len(rest)
        self._need = need

    def _take(self, events: Sequence[object], messages: MutableSequence[bytes | str]) -> None:
        """The data frames the protocol parsed, fragments joined into messages."""
        for event in events:
            if not isinstance(event, Frame):
                continue
            if event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY:
                self._fragment_text = event.opcode is Opcode.TEXT
                self._fragments = []
            elif event.opcode is not Opcode.CONT:
                continue  # control frames: the protocol already answered them
            self._fragments.append(bytes(event.data))
            if event.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                if self._fragment_text:
                    messages.append(data.decode("utf-8", "surrogateescape"))
                else:
                    messages.append(data)


class MaskKeys:
    """Masking keys for a client's frames: 4 bytes each from the OS's CSPRNG, fetched
    256 at a time (``websockets`` asks the OS once per frame)."""

    _BATCH = 1024

    def __init__(self) -> None:
        self._pool = b""
        self._next = 0

    def take(self) -> bytes:
        """The next unused key."""
        if self._next >= len(self._pool):
            self._pool, self._next = os.urandom(self._BATCH), 0
        key = self._pool[self._next : self._next + 4]
        self._next += 4
        return key


def encode_frame(payload: bytes, *, text: bool, keys: MaskKeys | None) -> bytes:
    """One whole data frame carrying ``payload``, masked when ``keys`` is given."""
    first = 0x81 if text else 0x82
    mask = 0x80 if keys is not None else 0
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, mask | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask | 127, length)
    if keys is None:
        return head + payload
    key = keys.take()
    return head + key + apply_mask(payload, key)
