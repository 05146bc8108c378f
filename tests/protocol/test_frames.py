"""The frame codec: golden bytes pin the wire format; bad input gets the right error."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_ws.protocol import (
    Cancel,
    Credit,
    Data,
    ErrorCode,
    Flag,
    FrameSizeError,
    GoAway,
    Hello,
    Open,
    Ping,
    ProtocolError,
    UnknownFrame,
    decode_message,
    encode_frame,
)
from mcp_ws.protocol.frames import Frame, data_fields, decode_frame, unpack_message
from mcp_ws.protocol.message import PACKER_KEEP, decode_payload, encode_payload, pack
from mcp_ws.protocol.reasons import MAX_CLOSE_REASON_BYTES, MAX_REASON_BYTES, close_reason

from ..helpers import raw

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "frames.json").read_text())


def frame_of(spec: dict[str, Any]) -> Frame:
    """A frame from its language-neutral description in vectors/frames.json."""
    kind = spec["type"]
    if kind == "HELLO":
        return Hello(settings=spec["settings"])
    if kind in ("OPEN", "DATA"):
        cls = Open if kind == "OPEN" else Data
        return cls(
            stream_id=spec["stream_id"],
            flags=Flag(spec["flags"]),
            payload=bytes.fromhex(spec["payload_hex"]),
        )
    if kind == "CANCEL":
        return Cancel(stream_id=spec["stream_id"], error_code=spec["code"], reason=spec["reason"])
    if kind == "CREDIT":
        return Credit(stream_id=spec["stream_id"], increment=spec["increment"])
    if kind == "PING":
        return Ping(opaque=int(spec["opaque"]), ack=spec["ack"])
    if kind == "GOAWAY":
        return GoAway(
            last_stream_id=spec["last_stream_id"], error_code=spec["code"], reason=spec["reason"]
        )
    assert kind == "UNKNOWN"
    return UnknownFrame(
        frame_type=spec["frame_type"], stream_id=spec["stream_id"], flags=spec["flags"]
    )


GOLDEN: list[tuple[Frame, bytes]] = [
    (frame_of(v["frame"]), bytes.fromhex(v["hex"])) for v in VECTORS["good"]
]


@pytest.mark.parametrize("vector", VECTORS["bad"], ids=lambda v: v["name"])
def test_bad_vectors_fail_with_their_documented_error(vector: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(bytes.fromhex(vector["hex"]), max_frame_size=vector["max_frame_size"])
    assert caught.value.error_code.name == vector["error"]


@pytest.mark.parametrize(
    "vector", VECTORS["messages"], ids=lambda v: str(v["message"].get("method", "response"))
)
def test_message_vectors(vector: dict[str, Any]) -> None:
    assert encode_payload(vector["message"]) == bytes.fromhex(vector["hex"])
    assert decode_payload(bytes.fromhex(vector["hex"])) == vector["message"]


@pytest.mark.parametrize(("frame", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_bytes(frame: Frame, wire: bytes) -> None:
    assert encode_frame(frame) == wire
    assert decode_message(wire, max_frame_size=65536) == [frame]


def test_every_frame_type_has_a_golden_vector() -> None:
    from mcp_ws.protocol import FrameType

    covered = {msgpack.unpackb(wire)[0] for _, wire in GOLDEN}
    assert {int(t) for t in FrameType} <= covered


def test_several_frames_in_one_message_all_decode_in_order() -> None:
    frames: list[Frame] = [
        Credit(stream_id=0, increment=1),
        Data(stream_id=1, payload=b"a"),
        Ping(opaque=1, ack=True),
    ]
    message = b"".join(encode_frame(f) for f in frames)
    assert decode_message(message, max_frame_size=65536) == frames


def test_extra_trailing_fields_are_ignored() -> None:
    assert decode_message(raw(2, 1, 0, b"x", "future", 1), max_frame_size=65536) == [
        Data(stream_id=1, payload=b"x")
    ]


def test_unknown_flag_bits_are_ignored() -> None:
    [frame] = decode_message(raw(2, 1, 0x81, b"x"), max_frame_size=65536)
    assert frame == Data(stream_id=1, flags=Flag.END, payload=b"x")


def test_unknown_frame_type_decodes_as_unknown_frame() -> None:
    assert decode_message(raw(42, 3, 7, "whatever", [1]), max_frame_size=65536) == [
        UnknownFrame(frame_type=42, stream_id=3, flags=7)
    ]


def test_long_reasons_are_cut_when_sent() -> None:
    frame = Cancel(stream_id=1, error_code=7, reason="r" * 10_000)
    [decoded] = decode_message(encode_frame(frame), max_frame_size=65536)
    assert isinstance(decoded, Cancel)
    assert decoded.reason == "r" * MAX_REASON_BYTES


def test_reasons_are_cut_by_utf8_bytes_never_inside_a_character() -> None:
    frame = GoAway(last_stream_id=0, error_code=1, reason="é" * 250)  # 500 bytes
    [decoded] = decode_message(encode_frame(frame), max_frame_size=65536)
    assert isinstance(decoded, GoAway)
    assert decoded.reason == "é" * 128
    assert len(decoded.reason.encode()) == MAX_REASON_BYTES
    # a peer that sends a longer one is cut on receipt, too
    [received] = decode_message(raw(6, 0, 0, 0, 1, "€" * 200), max_frame_size=65536)
    assert isinstance(received, GoAway)
    assert received.reason == "€" * 85  # 255 bytes: a 257th would split a character


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain", "plain"),
        ("é" * 62 + "x", "é" * 61),  # 125 bytes: cut to 122, not into the 62nd é
        ("a" + "é" * 61, "a" + "é" * 61),  # 123 bytes fit exactly
        ("😀" * 40, "😀" * 30),  # 4-byte characters: 120 of 123 bytes
        ("bad \udcff surrogate", "bad ? surrogate"),
    ],
    ids=["empty", "ascii", "cut before a 2-byte character", "2-byte exact", "4-byte", "surrogate"],
)
def test_close_reasons_fit_a_close_frame(text: str, expected: str) -> None:
    cut = close_reason(text)
    assert cut == expected
    assert len(cut.encode()) <= MAX_CLOSE_REASON_BYTES


BAD = [
    ("empty message", b"", ProtocolError),
    ("not msgpack", b"\xc1", ProtocolError),
    ("not an array", msgpack.packb("frame"), ProtocolError),
    ("array too short", raw(2, 1), ProtocolError),
    ("type not an int", raw("2", 1, 0, b""), ProtocolError),
    ("negative stream id", raw(2, -1, 0, b""), ProtocolError),
    ("stream id above 2**31-1", raw(2, 2**31, 0, b""), ProtocolError),
    ("bool stream id", raw(2, True, 0, b""), ProtocolError),
    ("flags above a byte", raw(2, 1, 256, b""), ProtocolError),
    ("DATA too short", raw(2, 1, 0), ProtocolError),
    ("DATA payload is a str", raw(2, 1, 0, "text"), ProtocolError),
    ("DATA END and MORE", raw(2, 1, 3, b""), ProtocolError),
    ("OPEN on stream 0", raw(1, 0, 0, b"x"), ProtocolError),
    ("OPEN too short", raw(1, 1, 0), ProtocolError),
    ("OPEN END and MORE", raw(1, 1, 3, b"x"), ProtocolError),
    ("CANCEL on stream 0", raw(3, 0, 0, 7, ""), ProtocolError),
    ("CANCEL too short", raw(3, 1, 0, 7), ProtocolError),
    ("CANCEL reason not a str", raw(3, 1, 0, 7, 5), ProtocolError),
    ("CANCEL code negative", raw(3, 1, 0, -1, ""), ProtocolError),
    ("CREDIT too short", raw(4, 1, 0), ProtocolError),
    ("CREDIT negative", raw(4, 1, 0, -1), ProtocolError),
    ("CREDIT above 2**31-1", raw(4, 1, 0, 2**31), ProtocolError),
    ("CREDIT not an int", raw(4, 1, 0, 1.5), ProtocolError),
    ("PING on stream 1", raw(5, 1, 0, 1), ProtocolError),
    ("PING too short", raw(5, 0, 0), ProtocolError),
    ("PING opaque negative", raw(5, 0, 0, -5), ProtocolError),
    ("GOAWAY on stream 1", raw(6, 1, 0, 0, 0, ""), ProtocolError),
    ("GOAWAY too short", raw(6, 0, 0, 0, 0), ProtocolError),
    ("GOAWAY reason not a str", raw(6, 0, 0, 0, 0, None), ProtocolError),
    ("HELLO on stream 1", raw(0, 1, 0, {}), ProtocolError),
    ("HELLO settings not a map", raw(0, 0, 0, [1]), ProtocolError),
    ("HELLO too short", raw(0, 0, 0), ProtocolError),
    ("truncated frame", raw(2, 1, 0, b"abc")[:-1], ProtocolError),
    ("valid frame then garbage", raw(2, 1, 0, b"a") + b"\xc1", ProtocolError),
    ("extension type", msgpack.packb([2, 1, 0, msgpack.ExtType(1, b"x")]), ProtocolError),
    ("invalid utf-8 reason", bytes.fromhex("95 03 01 00 07 a2 ff fe"), ProtocolError),
    ("map key not a string", raw(0, 0, 0, {1: 2}), ProtocolError),
    ("payload above max_frame_size", raw(2, 1, 0, b"x" * 65537), FrameSizeError),
    ("message above max_frame_size + 1024", raw(5, 0, 0, 1) * 14_000, FrameSizeError),
    ("nesting deeper than the decoder allows", b"\x91" * 5000 + b"\x00", ProtocolError),
]


@pytest.mark.parametrize(("data", "error"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_raises_the_specified_error(data: bytes, error: type[ProtocolError]) -> None:
    with pytest.raises(error) as info:
        decode_message(data, max_frame_size=65536)
    assert info.type is error
    assert info.value.error_code == error.error_code


def test_frame_size_error_codes() -> None:
    assert FrameSizeError.error_code is ErrorCode.FRAME_SIZE_ERROR
    assert ProtocolError.error_code is ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "header",
    [
        bytes.fromhex("c6 ff ff ff ff"),  # bin32 of 4 GiB
        bytes.fromhex("db ff ff ff ff"),  # str32 of 4 GiB
        bytes.fromhex("dd ff ff ff ff"),  # array32 of 4G elements
        bytes.fromhex("df ff ff ff ff"),  # map32 of 4G pairs
    ],
    ids=["bin", "str", "array", "map"],
)
def test_declared_4gib_value_in_20_bytes_does_not_allocate(header: bytes) -> None:
    data = bytes.fromhex("94 02 01 00") + header + b"\x00" * 11
    assert len(data) == 20
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decode_message(data, max_frame_size=65536)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


_value = st.one_of(
    st.integers(-2, 2**31 + 1),
    st.sampled_from([0, 1, 2, 3, 4, 0x80, 0x81, 0x82, 0x83, 0xFF, 0x100, 2**31 - 1]),
    st.booleans(),
    st.none(),
    st.binary(max_size=24),
    st.text(max_size=3),
    st.floats(allow_nan=False),
)


@st.composite
def _frame_values(draw: st.DrawFn) -> Any:
    """A frame's MessagePack value: a well-formed DATA, OPEN or other frame, then maybe a
    field replaced by anything, cut short or lengthened; sometimes not a list at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_value)
    value: list[Any] = [
        draw(st.sampled_from([1, 2, 1, 2, 1, 2, 0, 3, 4, 5, 6, 7])),
        draw(st.integers(0, 5) | st.just(2**31 - 1)),
        draw(st.integers(0, 3) | st.sampled_from([0x80, 0x83, 0xFF])),
        draw(st.binary(max_size=20)),
    ]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        value[draw(st.integers(0, 3))] = draw(_value)
    cut = draw(st.sampled_from([4, 4, 4, 5, 0, 2, 3]))
    return value[:cut] if cut < 4 else [*value, *draw(st.lists(_value, max_size=2))]


@settings(max_examples=2000, deadline=None)
@given(_frame_values())
def test_the_data_fast_path_agrees_with_the_frame_decoder(value: Any) -> None:
    """`data_fields` accepts exactly the DATA and OPEN frames `decode_frame` accepts, with
    the same stream, END and MORE bits and payload; the connection's fast path rests on it."""
    limit = 16
    fields = data_fields(value, limit)
    try:
        frame: Frame | Exception = decode_frame(value, limit)
    except ProtocolError as exc:
        frame = exc
    if fields is None:
        assert not isinstance(frame, Data | Open)
        return
    assert isinstance(frame, Data | Open)
    ftype, sid, flags, payload = fields
    assert ftype == (2 if isinstance(frame, Data) else 1)
    assert (sid, flags & 3, payload) == (frame.stream_id, int(frame.flags), frame.payload)


def test_unpack_message_takes_one_frame_or_several_and_reports_the_bad_ones() -> None:
    """One frame, several (the ``unpackb`` attempt gives way to the unpacker), and the
    errors only the unpacker describes."""
    one = encode_frame(Data(stream_id=1, flags=Flag.END, payload=b"a"))
    two = encode_frame(Open(stream_id=3, payload=b"b"))
    assert unpack_message(one, 16) == [[2, 1, 1, b"a"]]
    assert unpack_message(one + two, 16) == [[2, 1, 1, b"a"], [1, 3, 0, b"b"]]
    with pytest.raises(ProtocolError, match="truncated frame"):
        unpack_message(one + two[:-1], 16)
    with pytest.raises(ProtocolError, match="malformed MessagePack"):
        unpack_message(b"\xc1", 16)
    with pytest.raises(ProtocolError, match="malformed MessagePack"):
        unpack_message(msgpack.packb(msgpack.ExtType(1, b"x")), 16)


def test_the_shared_packer_does_not_keep_a_large_message_buffer() -> None:
    """A msgpack packer keeps a buffer the size of the largest thing it packed: after a
    16 MiB message the thread's packer is dropped, not kept at 32 MiB."""
    pack({"warm": 1})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        big = b"x" * (16 << 20)
        assert len(pack({"data": big})) > 16 << 20
        del big
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < PACKER_KEEP, f"{held} bytes held after packing 16 MiB"
    assert pack({"small": b"y" * 10}) == msgpack.packb({"small": b"y" * 10}, use_bin_type=True)
