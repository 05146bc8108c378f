"""Frame codec: one MessagePack array per frame, several frames per WebSocket message.

``encode_frame`` turns a frame object into bytes; ``coalesce`` packs encoded frames into
as few WebSocket messages as fit the peer's limit; ``decode_message`` turns one WebSocket
binary message into the frames it holds, validating every field and bounding every
allocation by the message's own length. Only ``ProtocolError`` subclasses escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .constants import MAX_WINDOW, Flag, FrameType
from .errors import FrameSizeError, ProtocolError
from .message import pack
from .reasons import MAX_REASON_BYTES, truncate_utf8

__all__ = [
    "MAX_STREAM_ID",
    "MESSAGE_OVERHEAD",
    "Cancel",
    "Credit",
    "Data",
    "Frame",
    "GoAway",
    "Hello",
    "Open",
    "Ping",
    "UnknownFrame",
    "coalesce",
    "data_fields",
    "decode_frame",
    "decode_message",
    "encode_frame",
    "unpack_message",
]

#: Largest legal stream id (31 bits, as in HTTP/2).
MAX_STREAM_ID = 2**31 - 1
#: How much longer than ``max_frame_size`` one WebSocket message may be.
MESSAGE_OVERHEAD = 1024
_MAX_OPAQUE = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """``[0, 0, 0, settings]``: the first frame from each side."""

    settings: dict[str, Any] = field(default_factory=dict)
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Open:
    """``[1, sid, flags, payload]``: opens a stream, carrying its first message or fragment."""

    stream_id: int
    flags: Flag = Flag.NONE
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    """``[2, sid, flags, payload]``: a message or fragment on an open stream (or stream 0)."""

    stream_id: int
    flags: Flag = Flag.NONE
    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """``[3, sid, 0, code, reason]``: resets one stream."""

    stream_id: int
    error_code: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Credit:
    """``[4, sid, 0, increment]``: grants bytes of credit (stream 0: the connection).

    With resume (docs/protocol.md section 9) a fifth field, ``received``, carries the
    sender's position; the connection checks it (here it is whatever the peer sent)."""

    stream_id: int
    increment: int
    received: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """``[5, 0, flags, opaque]``: liveness and RTT; ``ACK`` marks the reply. With
    resume, ``received`` as on `Credit`."""

    opaque: int
    ack: bool = False
    stream_id: int = 0
    received: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAway:
    """``[6, 0, 0, last_sid, code, reason]``: the sender is closing the connection."""

    last_stream_id: int
    error_code: int
    reason: str = ""
    stream_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownFrame:
    """A frame of a type this version does not know; ignored by the connection."""

    frame_type: int
    stream_id: int
    flags: int


Frame = Hello | Open | Data | Cancel | Credit | Ping | GoAway | UnknownFrame


def _reason(text: str) -> str:
    return truncate_utf8(text, MAX_REASON_BYTES)


def encode_frame(frame: Frame) -> bytes:
    """The MessagePack bytes of one frame."""
    match frame:
        case Data(stream_id=sid, flags=flags, payload=payload):
            fields: list[Any] = [FrameType.DATA, sid, int(flags), payload]
        case Open(stream_id=sid, flags=flags, payload=payload):
            fields = [FrameType.OPEN, sid, int(flags), payload]
        case Credit(stream_id=sid, increment=inc, received=received):
            fields = [FrameType.CREDIT, sid, 0, inc]
            if received is not None:
                fields.append(received)
        case Cancel(stream_id=sid, error_code=code, reason=reason):
            fields = [FrameType.CANCEL, sid, 0, int(code), _reason(reason)]
        case Ping(opaque=opaque, ack=ack, received=received):
            fields = [FrameType.PING, 0, int(Flag.ACK) if ack else 0, opaque]
            if received is not None:
                fields.append(received)
        case GoAway(last_stream_id=last, error_code=code, reason=reason):
            fields = [FrameType.GOAWAY, 0, 0, last, int(code), _reason(reason)]
        case Hello(settings=settings):
            fields = [FrameType.HELLO, 0, 0, settings]
        case UnknownFrame(frame_type=ftype, stream_id=sid, flags=flags):
            fields = [ftype, sid, flags]
    return pack(fields)


def _int(value: object, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ProtocolError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _fields(raw: list[Any], n: int, name: str) -> None:
    if len(raw) < n:
        raise ProtocolError(f"{name} frame needs {n} fields, got {len(raw)}")


def _payload(raw: list[Any], name: str, max_frame_size: int) -> bytes:
    payload = raw[3]
    if type(payload) is not bytes:
        raise ProtocolError(f"{name} payload must be MessagePack bin, got {type(payload).__name__}")
    if len(payload) > max_frame_size:
        raise FrameSizeError(
            f"{name} payload of {len(payload)} bytes exceeds max_frame_size {max_frame_size}"
        )
    return payload


_DATA_FLAGS = (Flag.NONE, Flag.END, Flag.MORE)  # by the value of the END and MORE bits
_DATA, _OPEN = int(FrameType.DATA), int(FrameType.OPEN)


def _data_flags(flags: int, name: str) -> Flag:
    known = flags & 3  # END | MORE, as plain ints: IntFlag arithmetic is slow per frame
    if known == 3:
        raise ProtocolError(f"{name} frame sets both END and MORE")
    return _DATA_FLAGS[known]


def _reason_field(value: object) -> str:
    if type(value) is not str:
        raise ProtocolError(f"reason must be a string, got {type(value).__name__}")
    return value if len(value) <= MAX_REASON_BYTES // 4 else _reason(value)


def decode_frame(raw: object, max_frame_size: int) -> Frame:
    """One frame from its MessagePack value (see `unpack_message`); raises as
    `decode_message` does."""
    if type(raw) is not list or len(raw) < 3:
        raise ProtocolError("a frame must be a MessagePack array of at least 3 fields")
    ftype = raw[0]
    if type(ftype) is not int:
        raise ProtocolError(f"frame type must be an integer, got {ftype!r}")
    sid = _int(raw[1], "stream_id", 0, MAX_STREAM_ID)
    flags = _int(raw[2], "flags", 0, 0xFF)
    if ftype == _DATA:
        _fields(raw, 4, "DATA")
        return Data(
            stream_id=sid,
            flags=_data_flags(flags, "DATA"),
            payload=_payload(raw, "DATA", max_frame_size),
        )
    if ftype == _OPEN:
        _fields(raw, 4, "OPEN")
        if sid == 0:
            raise ProtocolError("OPEN on stream 0")
        return Open(
            stream_id=sid,
            flags=_data_flags(flags, "OPEN"),
            payload=_payload(raw, "OPEN", max_frame_size),
        )
    if ftype == FrameType.CREDIT:
        _fields(raw, 4, "CREDIT")
        return Credit(
            stream_id=sid,
            increment=_int(raw[3], "CREDIT increment", 0, MAX_WINDOW),
            received=raw[4] if len(raw) > 4 else None,
        )
    if ftype == FrameType.CANCEL:
        _fields(raw, 5, "CANCEL")
        if sid == 0:
            raise ProtocolError("CANCEL on stream 0")
        code = _int(raw[3], "CANCEL code", 0, _MAX_OPAQUE)
        return Cancel(stream_id=sid, error_code=code, reason=_reason_field(raw[4]))
    if ftype == FrameType.PING:
        _fields(raw, 4, "PING")
        if sid != 0:
            raise ProtocolError("PING on a stream other than 0")
        return Ping(
            opaque=_int(raw[3], "PING opaque", 0, _MAX_OPAQUE),
            ack=bool(flags & Flag.ACK),
            received=raw[4] if len(raw) > 4 else None,
        )
    if ftype == FrameType.GOAWAY:
        _fields(raw, 6, "GOAWAY")
        if sid != 0:
            raise ProtocolError("GOAWAY on a stream other than 0")
        return GoAway(
            last_stream_id=_int(raw[3], "GOAWAY last_sid", 0, MAX_STREAM_ID),
            error_code=_int(raw[4], "GOAWAY code", 0, _MAX_OPAQUE),
            reason=_reason_field(raw[5]),
        )
    if ftype == FrameType.HELLO:
        _fields(raw, 4, "HELLO")
        if sid != 0:
            raise ProtocolError("HELLO on a stream other than 0")
        if type(raw[3]) is not dict:
            raise ProtocolError("HELLO settings must be a map")
        return Hello(settings=raw[3])
    return UnknownFrame(frame_type=ftype, stream_id=sid, flags=flags)


def _reject_ext(code: int, data: bytes) -> object:
    raise ValueError(f"MessagePack extension type {code} is not allowed")


def decode_message(data: bytes, *, max_frame_size: int) -> list[Frame]:
    """Decode every frame in one WebSocket binary message.

    Raises ``FrameSizeError`` for a message longer than ``max_frame_size + 1024`` or a
    payload longer than ``max_frame_size``, and ``ProtocolError`` for anything that is
    not a sequence of well-formed frames (including an empty message or a truncated frame).
    """
    return [decode_frame(raw, max_frame_size) for raw in unpack_message(data, max_frame_size)]


def unpack_message(data: bytes, max_frame_size: int) -> list[Any]:
    """The MessagePack values of the frames in one WebSocket message, not yet checked as
    frames (`decode_message` does that). Raises as `decode_message` does for the
    message's size and for MessagePack that is malformed or truncated."""
    size = len(data)
    if size > max_frame_size + MESSAGE_OVERHEAD:
        raise FrameSizeError(
            f"message of {size} bytes exceeds max_frame_size + {MESSAGE_OVERHEAD} "
            f"({max_frame_size + MESSAGE_OVERHEAD})"
        )
    if size == 0:
        raise ProtocolError("empty WebSocket message")
    # Every length the input declares is bounded by the input itself, so a
    # 4 GiB string header in 20 bytes fails without allocating. Most messages hold one
    # frame: ``unpackb`` decodes those without building an unpacker; anything else
    # (several frames, or an error to describe) goes through one.
    try:
        return [msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_reject_ext)]
    except Exception:  # several frames, or an error: the unpacker below says which
        pass
    unpacker = msgpack.Unpacker(
        max_buffer_size=size, raw=False, strict_map_key=True, ext_hook=_reject_ext
    )
    unpacker.feed(data)
    values: list[Any] = []
    try:
        while unpacker.tell() < size:
            values.append(unpacker.unpack())
    except msgpack.OutOfData:
        raise ProtocolError("truncated frame at the end of a message") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"malformed MessagePack: {exc or type(exc).__name__}") from None
    return values


def data_fields(raw: Any, max_frame_size: int) -> tuple[int, int, int, bytes] | None:
    """``(type, stream id, flags, payload)`` of a well-formed DATA or OPEN frame's
    MessagePack value, checked as `decode_message` checks it, without building the frame;
    ``None`` for anything else, which `decode_frame` then decodes (or rejects)."""
    if type(raw) is not list or len(raw) < 4:
        return None
    ftype, sid, flags, payload = raw[0], raw[1], raw[2], raw[3]
    if (
        type(ftype) is int
        and (ftype == _DATA or (ftype == _OPEN and sid != 0))
        and type(sid) is int
        and 0 <= sid <= MAX_STREAM_ID
        and type(flags) is int
        and 0 <= flags <= 0xFF
        and flags & 3 != 3
        and type(payload) is bytes
        and len(payload) <= max_frame_size
    ):
        return ftype, sid, flags, payload
    return None


def coalesce(frames: list[bytes], limit: int) -> list[bytes]:
    """Join encoded frames, in order, into as few WebSocket messages as fit under
    ``limit`` bytes each (a frame longer than ``limit`` goes alone)."""
    if len(frames) <= 1:
        return frames
    messages: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for frame in frames:
        if batch and size + len(frame) > limit:
            messages.append(b"".join(batch))
            batch, size = [], 0
        batch.append(frame)
        size += len(frame)
    if batch:
        messages.append(b"".join(batch))
    return messages
