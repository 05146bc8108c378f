"""A connected pair of sans-I/O peers: streams, credit, cancel, ping, goaway, errors."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from mcp_ws.protocol import (
    CLOSE_CODES,
    Cancel,
    Connection,
    ConnectionClosedError,
    ConnectionState,
    ConnectionTerminated,
    Credit,
    CreditGranted,
    Data,
    ErrorCode,
    Event,
    Flag,
    FlowControlError,
    FrameSizeError,
    GoAway,
    GoAwayReceived,
    HelloReceived,
    InvalidMessageReceived,
    Limits,
    MessageReceived,
    MessageTooLargeForPeer,
    Open,
    Ping,
    PingAcknowledged,
    ProtocolError,
    ProtocolTimeoutError,
    Role,
    Settings,
    StreamCancelled,
    StreamEnded,
    StreamLimitError,
    StreamOpened,
    StreamState,
    StreamStateError,
    UsageError,
    close_code_for,
    encode_frame,
)

from ..helpers import FakeClock, Pair, frames_of, hello, notification, payload, raw, request, result


def server_after_hello(clock: FakeClock | None = None, **settings: Any) -> Connection:
    """A server that has seen a raw client's HELLO (the test plays the client by hand)."""
    server = Connection(Role.SERVER, Settings(**settings), clock=clock or FakeClock())
    server.data_to_send()
    assert server.receive_data(hello())
    return server


def terminated(events: list[Event]) -> ConnectionTerminated:
    [event] = [e for e in events if isinstance(e, ConnectionTerminated)]
    return event


def sent_goaway(conn: Connection) -> GoAway:
    [frame] = [f for f in frames_of(conn.data_to_send()) if isinstance(f, GoAway)]
    return frame


# -- connection start ------------------------------------------------------------------


def test_each_side_sends_hello_first_and_learns_the_other_settings() -> None:
    p = Pair(server_settings=Settings(max_streams=7, max_frame_size=32768))
    first_client = frames_of(p.client.data_to_send())
    first_server = frames_of(p.server.data_to_send())
    assert type(first_client[0]).__name__ == "Hello"
    assert type(first_server[0]).__name__ == "Hello"
    assert p.server.receive_data(encode_frame(first_client[0])) == [
        HelloReceived(settings=Settings())
    ]
    [event] = p.client.receive_data(encode_frame(first_server[0]))
    assert event == HelloReceived(settings=Settings(max_streams=7, max_frame_size=32768))
    assert p.client.peer_settings.max_streams == 7


@pytest.mark.parametrize(
    "first",
    [raw(2, 0, 0, payload(notification())), raw(5, 0, 0, 1), raw(4, 0, 0, 10), raw(99, 0, 0)],
    ids=["DATA", "PING", "CREDIT", "unknown"],
)
def test_a_first_frame_other_than_hello_is_a_protocol_error(first: bytes) -> None:
    server = Connection(Role.SERVER)
    event = terminated(server.receive_data(first))
    assert event.error_code is ErrorCode.PROTOCOL_ERROR
    assert event.close_code == 1002
    assert isinstance(event.error, ProtocolError)
    assert server.state is ConnectionState.CLOSED
    frames = frames_of(server.data_to_send())
    assert isinstance(frames[-1], GoAway)
    assert frames[-1].error_code == ErrorCode.PROTOCOL_ERROR


def test_second_hello_is_a_protocol_error() -> None:
    server = server_after_hello()
    event = terminated(server.receive_data(hello()))
    assert event.error_code is ErrorCode.PROTOCOL_ERROR
    assert "second HELLO" in event.reason


def test_bad_hello_settings_are_a_protocol_error() -> None:
    server = Connection(Role.SERVER)
    event = terminated(server.receive_data(hello(max_frame_size=10)))
    assert event.error_code is ErrorCode.PROTOCOL_ERROR


def test_pipelined_open_before_the_peer_hello_stays_within_the_smallest_limits() -> None:
    p = Pair(server_settings=Settings(initial_window=16384, max_frame_size=16384))
    big = request(1, blob="x" * 100_000)
    sid = p.client.open_stream(big, end=True)
    # Nothing from the server yet: the client assumes minimal credit and frame size.
    frames = frames_of(p.client.data_to_send())
    opened = [f for f in frames if isinstance(f, Open)]
    assert len(opened[0].payload) == 16384
    assert opened[0].flags == Flag.MORE
    assert not [f for f in frames if isinstance(f, Data)]
    p.server.receive_data(b"".join(encode_frame(f) for f in frames))
    p.auto_ack = True
    p.flush()
    [msg] = p.messages("server")
    assert msg.stream_id == sid
    assert msg.message == big


# -- streams ---------------------------------------------------------------------------


def test_request_response_round_trip_closes_the_stream_on_both_sides(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1, name="echo"), end=True)
    assert sid == 1
    _, server_events = pair.flush()
    assert server_events == [
        StreamOpened(stream_id=1),
        MessageReceived(
            stream_id=1,
            message=request(1, name="echo"),
            flow_controlled_length=len(payload(request(1, name="echo"))),
        ),
        StreamEnded(stream_id=1),
    ]
    assert pair.server.stream_state(1) is StreamState.HALF_CLOSED_REMOTE
    pair.server.send_message(1, notification(progress=1))
    pair.server.send_message(1, result(1, ok=True), end=True)
    client_events, _ = pair.flush()
    assert [type(e) for e in client_events] == [MessageReceived, MessageReceived, StreamEnded]
    assert [e.message for e in client_events[:2] if isinstance(e, MessageReceived)] == [
        notification(progress=1),
        result(1, ok=True),
    ]
    assert pair.client.open_stream_count == pair.server.open_stream_count == 0
    assert pair.client.stream_state(1) is None


def test_has_data_to_send_says_when_the_io_layer_has_something_to_write(pair: Pair) -> None:
    assert Connection(Role.CLIENT).has_data_to_send  # its HELLO
    assert not pair.client.has_data_to_send
    assert not pair.server.has_data_to_send
    pair.client.open_stream(request(1, name="echo"), end=True)
    assert pair.client.has_data_to_send
    for message in pair.client.data_to_send():
        pair.server.receive_data(message)
    assert not pair.client.has_data_to_send
    assert not pair.server.has_data_to_send  # a request needs no reply from the core
    pair.client.ping()
    for message in pair.client.data_to_send():
        pair.server.receive_data(message)
    assert pair.server.has_data_to_send  # the PONG
    assert any(isinstance(f, Ping) and f.ack for f in frames_of(pair.server.data_to_send()))
    assert not pair.server.has_data_to_send
    pair.server.send_message(1, result(1, ok=True), end=True)
    assert pair.server.has_data_to_send


def test_stream_ids_odd_for_the_client_even_for_the_server(pair: Pair) -> None:
    assert [pair.client.open_stream(request(i)) for i in range(3)] == [1, 3, 5]
    assert [pair.server.open_stream(request(i)) for i in range(2)] == [2, 4]
    _, server_events = pair.flush()
    assert [e.stream_id for e in server_events if isinstance(e, StreamOpened)] == [1, 3, 5]


def test_session_stream_carries_messages_both_ways(pair: Pair) -> None:
    pair.client.send_message(0, notification("notifications/initialized"))
    pair.server.send_message(0, notification("notifications/tools/list_changed"))
    client_events, server_events = pair.flush()
    assert [
        (e.stream_id, e.message["method"]) for e in server_events if isinstance(e, MessageReceived)
    ] == [(0, "notifications/initialized")]
    assert [
        (e.stream_id, e.message["method"]) for e in client_events if isinstance(e, MessageReceived)
    ] == [(0, "notifications/tools/list_changed")]


def test_messages_are_fragmented_at_the_peer_frame_size_and_reassembled(pair: Pair) -> None:
    big = result(1, text="y" * 200_000)
    sid = pair.client.open_stream(request(1), end=True)
    pair.flush()
    pair.server.send_message(sid, big, end=True)
    messages = pair.server.data_to_send()
    data = [f for f in frames_of(messages) if isinstance(f, Data)]
    assert all(len(f.payload) <= 65536 for f in data)
    assert [f.flags for f in data[:-1]] == [Flag.MORE] * (len(data) - 1)
    assert data[-1].flags == Flag.END
    events = [e for m in messages for e in pair.client.receive_data(m)]
    [msg] = [e for e in events if isinstance(e, MessageReceived)]
    assert msg.message == big


def test_send_after_end_and_end_twice_are_usage_errors(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1), end=True)
    with pytest.raises(StreamStateError):
        pair.client.send_message(sid, request(2))
    with pytest.raises(StreamStateError):
        pair.client.end_stream(sid)
    with pytest.raises(StreamStateError):
        pair.client.send_message(99, request(2))
    with pytest.raises(StreamStateError):
        pair.client.end_stream(0)
    with pytest.raises(StreamStateError):
        pair.client.cancel_stream(0)
    with pytest.raises(StreamStateError):
        pair.client.send_message(0, notification(), end=True)


def test_a_message_the_peer_cannot_take_fails_locally() -> None:
    p = Pair(server_settings=Settings(max_message_size=1024))
    p.flush()
    with pytest.raises(MessageTooLargeForPeer):
        p.client.open_stream(request(1, blob="z" * 2000))
    assert p.client.open_stream_count == 0


def test_unencodable_messages_raise_type_error(pair: Pair) -> None:
    with pytest.raises(TypeError):
        pair.client.send_message(0, {"jsonrpc": "2.0", "method": "x", "params": {"o": object()}})


def test_end_after_queued_data_goes_out_after_it(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1))
    pair.client.send_message(sid, notification(a=1))
    pair.client.end_stream(sid)
    _, server_events = pair.flush()
    assert [type(e) for e in server_events] == [
        StreamOpened,
        MessageReceived,
        MessageReceived,
        StreamEnded,
    ]


# -- stream-level errors ----------------------------------------------------------------


def test_data_after_end_is_cancelled_with_stream_closed() -> None:
    server = server_after_hello()
    server.receive_data(raw(1, 1, 1, payload(request(1))))
    events = server.receive_data(raw(2, 1, 0, payload(notification())))
    assert events == [
        StreamCancelled(
            stream_id=1, error_code=ErrorCode.STREAM_CLOSED, reason="DATA after END", remote=False
        )
    ]
    cancels = [f for f in frames_of(server.data_to_send()) if isinstance(f, Cancel)]
    assert cancels == [
        Cancel(stream_id=1, error_code=ErrorCode.STREAM_CLOSED, reason="DATA after END")
    ]
    assert server.state is ConnectionState.OPEN


def test_a_non_json_rpc_message_cancels_its_stream_with_protocol_error() -> None:
    server = server_after_hello()
    events = server.receive_data(raw(1, 1, 0, msgpack.packb({"hello": "world"})))
    assert [type(e) for e in events] == [StreamOpened, StreamCancelled]
    assert isinstance(events[1], StreamCancelled)
    assert events[1].error_code is ErrorCode.PROTOCOL_ERROR
    assert server.state is ConnectionState.OPEN
    # the next stream works
    events = server.receive_data(raw(1, 3, 1, payload(request(2))))
    assert [type(e) for e in events] == [StreamOpened, MessageReceived, StreamEnded]


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"jsonrpc": "1.0", "method": "x"}),
        msgpack.packb({"jsonrpc": "2.0", "id": 1}),
    ],
    ids=["not msgpack", "array", "wrong version", "neither request nor response"],
)
def test_a_bad_message_on_stream_0_is_dropped_and_the_session_goes_on(body: bytes) -> None:
    server = server_after_hello()
    events = server.receive_data(raw(2, 0, 0, body))
    assert [type(e) for e in events] == [InvalidMessageReceived]
    [event] = server.receive_data(raw(2, 0, 0, payload(notification())))
    assert isinstance(event, MessageReceived)
    assert event.message == notification()


def test_end_on_stream_0_is_a_protocol_error() -> None:
    server = server_after_hello()
    assert terminated(server.receive_data(raw(2, 0, 1, b""))).error_code is ErrorCode.PROTOCOL_ERROR


def test_message_too_large_cancels_the_stream_and_the_connection_lives() -> None:
    server = server_after_hello(max_message_size=20000, max_frame_size=16384)
    server.receive_data(raw(1, 1, 2, b"a" * 16000))
    events = server.receive_data(raw(2, 1, 2, b"a" * 16000))
    assert [(type(e), e.error_code) for e in events if isinstance(e, StreamCancelled)] == [
        (StreamCancelled, ErrorCode.MESSAGE_TOO_LARGE)
    ]
    assert len(events) == 1
    assert server.state is ConnectionState.OPEN
    # late fragments of the cancelled stream are ignored
    assert server.receive_data(raw(2, 1, 0, b"a" * 100)) == []


def test_message_too_large_on_stream_0_drops_only_that_message() -> None:
    server = server_after_hello(max_message_size=20000, max_frame_size=16384)
    server.receive_data(raw(2, 0, 2, b"a" * 16000))
    assert [type(e) for e in server.receive_data(raw(2, 0, 2, b"a" * 16000))] == [
        InvalidMessageReceived
    ]
    assert server.receive_data(raw(2, 0, 0, b"a" * 100)) == []  # rest of that message
    [msg] = server.receive_data(raw(2, 0, 0, payload(notification())))
    assert isinstance(msg, MessageReceived)
    assert msg.message == notification()


def test_reassembly_budget_is_connection_wide() -> None:
    server = server_after_hello(max_message_size=1024 * 1024, max_frame_size=65536)
    # budget is 4 MiB: 65 streams each holding a 64 KiB fragment cross it
    events = []
    for i in range(65):
        events += server.receive_data(raw(1, 2 * i + 1, 2, b"a" * 65536))
    cancelled = [e for e in events if isinstance(e, StreamCancelled)]
    assert [e.error_code for e in cancelled] == [ErrorCode.MESSAGE_TOO_LARGE]


def test_end_inside_a_fragmented_message_is_a_stream_error() -> None:
    server = server_after_hello()
    server.receive_data(raw(1, 1, 2, b"\x81"))
    [event] = server.receive_data(raw(2, 1, 1, b""))
    assert isinstance(event, StreamCancelled)
    assert event.error_code is ErrorCode.PROTOCOL_ERROR


# -- stream ids and limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ([raw(1, 2, 0, payload(request(1)))], "wrong parity"),
        (
            [raw(1, 3, 0, payload(request(1))), raw(1, 1, 0, payload(request(2)))],
            "ids must increase",
        ),
        (
            [raw(1, 3, 0, payload(request(1))), raw(1, 3, 0, payload(request(2)))],
            "ids must increase",
        ),
        ([raw(2, 5, 0, payload(notification()))], "never opened"),
        ([raw(3, 5, 0, 7, "")], "never opened"),
        ([raw(4, 5, 0, 100)], "never opened"),
        ([raw(4, 2, 0, 100)], "never opened"),
    ],
    ids=[
        "wrong parity",
        "lower id",
        "reused id",
        "DATA unknown",
        "CANCEL unknown",
        "CREDIT unknown",
        "CREDIT local unknown",
    ],
)
def test_stream_id_violations_are_protocol_errors(frames: list[bytes], fragment: str) -> None:
    server = server_after_hello()
    events = []
    for f in frames:
        events += server.receive_data(f)
    event = terminated(events)
    assert event.error_code is ErrorCode.PROTOCOL_ERROR
    assert fragment in event.reason


def test_opening_past_max_streams_is_refused_without_starting_work() -> None:
    server = server_after_hello(max_streams=2)
    events = []
    for sid in (1, 3, 5):
        events += server.receive_data(raw(1, sid, 0, payload(request(sid))))
    assert [e.stream_id for e in events if isinstance(e, StreamOpened)] == [1, 3]
    cancels = [f for f in frames_of(server.data_to_send()) if isinstance(f, Cancel)]
    assert cancels == [Cancel(stream_id=5, error_code=ErrorCode.REFUSED_STREAM, reason="refused")]
    # a finished stream frees its slot once its request has been consumed
    server.send_message(1, result(1), end=True)
    server.receive_data(raw(2, 1, 1, b""))
    server.data_to_send()
    assert server.receive_data(raw(1, 7, 0, payload(request(7)))) == []  # refused: 1 is unread
    server.acknowledge_received(1, len(payload(request(1))))
    server.data_to_send()
    assert (
        next(type(e) for e in server.receive_data(raw(1, 9, 0, payload(request(9)))))
        is StreamOpened
    )


def test_slots_are_held_until_release_when_auto_release_is_off() -> None:
    server = Connection(Role.SERVER, Settings(max_streams=1), auto_release=False)
    server.receive_data(hello())
    server.receive_data(raw(1, 1, 0, payload(request(1))))
    server.receive_data(raw(3, 1, 0, 7, ""))  # the client cancels; the handler still runs
    server.data_to_send()
    server.receive_data(raw(1, 3, 0, payload(request(3))))
    assert any(
        isinstance(f, Cancel) and f.error_code == ErrorCode.REFUSED_STREAM
        for f in frames_of(server.data_to_send())
    )
    server.release_stream(1)
    assert isinstance(server.receive_data(raw(1, 5, 0, payload(request(5))))[0], StreamOpened)


def test_the_opener_counts_streams_until_the_peer_ends_them_and_they_are_read() -> None:
    p = Pair(server_settings=Settings(max_streams=2))
    p.flush()
    assert p.client.stream_slots == 2
    p.client.open_stream(request(1), end=True)
    assert p.client.stream_slots == 1
    p.client.open_stream(request(2), end=True)
    assert not p.client.can_open_stream
    assert p.client.stream_slots == 0
    with pytest.raises(StreamLimitError):
        p.client.open_stream(request(3))
    p.flush()
    p.server.send_message(1, result(1), end=True)
    p.flush()
    # ended, but its response is still held for the application: the slot stays taken
    assert p.client.stream_slots == 0
    (response,) = p.messages("client")
    p.client.acknowledge_received(1, response.flow_controlled_length)
    assert p.client.can_open_stream
    assert p.client.stream_slots == 1
    assert p.client.open_stream(request(3)) == 5


def test_our_own_max_streams_caps_the_streams_we_open() -> None:
    p = Pair(client_settings=Settings(max_streams=2), server_settings=Settings(max_streams=100))
    p.flush()
    assert p.client.stream_limit == 2
    assert p.client.stream_slots == 2
    p.client.open_stream(request(1), end=True)
    p.client.open_stream(request(2), end=True)
    with pytest.raises(StreamLimitError, match="ours 2"):
        p.client.open_stream(request(3))


def test_late_frames_for_recently_closed_streams_are_ignored_and_credited() -> None:
    server = server_after_hello()
    server.receive_data(raw(1, 1, 0, payload(request(1))))
    server.cancel_stream(1)
    server.data_to_send()
    body = b"x" * 5000
    assert server.receive_data(raw(2, 1, 0, body)) == []
    assert server.receive_data(raw(4, 1, 0, 10)) == []
    assert server.receive_data(raw(3, 1, 0, 7, "")) == []
    assert server.state is ConnectionState.OPEN
    # the 5000 bytes were charged to the connection window and given back
    assert (
        server._flow.receive_credit(0) + server._flow._recv_conn.recv_due
        == Settings().connection_window
    )


# -- flow control -------------------------------------------------------------------------


def test_sender_stops_at_the_window_and_resumes_when_the_reader_consumes() -> None:
    p = Pair(server_settings=Settings(initial_window=65536))
    p.flush()
    sid = p.client.open_stream(request(1))
    p.flush()
    p.server.acknowledge_received(sid, p.messages("server")[0].flow_controlled_length)
    chunk = notification(blob="b" * 10_000)
    for _ in range(20):  # ~200 KB, more than the 64 KiB window
        p.client.send_message(sid, chunk)
    p.flush()
    received = p.messages("server")[1:]
    got = sum(m.flow_controlled_length for m in received)
    assert got <= 65536
    assert p.client.buffered(sid) > 0
    # consuming less than a quarter of the window grants nothing
    p.server.acknowledge_received(sid, received[0].flow_controlled_length)
    assert not [
        f
        for f in frames_of(p.server.data_to_send())
        if isinstance(f, Credit) and f.stream_id == sid
    ]
    for m in received[1:]:
        p.server.acknowledge_received(sid, m.flow_controlled_length)
    p.auto_ack = True
    p.flush()
    assert len(p.messages("server")) == 21
    assert p.client.buffered(sid) == 0


def test_credit_grants_are_batched_per_quarter_window(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1))
    body = notification(blob="c" * 1000)
    for _ in range(200):
        pair.client.send_message(sid, body)
    pair.flush()
    queued = [
        pair.server.acknowledge_received(sid, m.flow_controlled_length)
        for m in pair.messages("server")
    ]
    credits = [f for f in frames_of(pair.server.data_to_send()) if isinstance(f, Credit)]
    stream_grants = [f.increment for f in credits if f.stream_id == sid]
    assert stream_grants
    assert all(g >= 262144 // 4 for g in stream_grants)
    assert len(stream_grants) <= 4
    # acknowledge_received says which acknowledgements queued a CREDIT (so the I/O layer
    # wakes its writer only for those): one per batch, not one per message
    assert 0 < sum(queued) <= len(credits) < len(queued)
    assert pair.server.acknowledge_received(sid, 0) is False


def test_acknowledging_more_than_delivered_is_a_usage_error(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1))
    pair.flush()
    with pytest.raises(UsageError):
        pair.server.acknowledge_received(sid, 10_000)
    with pytest.raises(UsageError):
        pair.server.acknowledge_received(sid, -1)


def test_data_beyond_credit_is_a_flow_control_error() -> None:
    server = server_after_hello(initial_window=16384, max_frame_size=16384)
    server.receive_data(raw(1, 1, 0, payload(request(1))))
    chunk = payload(notification(blob="x" * 9000))
    assert server.receive_data(raw(2, 1, 0, chunk))  # delivered, never consumed
    event = terminated(server.receive_data(raw(2, 1, 0, chunk)))
    assert event.error_code is ErrorCode.FLOW_CONTROL_ERROR
    assert event.close_code == 1002
    assert isinstance(event.error, FlowControlError)


def test_credit_of_zero_is_a_protocol_error() -> None:
    server = server_after_hello()
    assert terminated(server.receive_data(raw(4, 0, 0, 0))).error_code is ErrorCode.PROTOCOL_ERROR


def test_credit_overflowing_a_window_is_a_flow_control_error() -> None:
    server = server_after_hello()
    server.receive_data(raw(1, 1, 0, payload(request(1))))
    assert (
        terminated(server.receive_data(raw(4, 1, 0, 2**31 - 1))).error_code
        is ErrorCode.FLOW_CONTROL_ERROR
    )
    server = server_after_hello()
    assert (
        terminated(server.receive_data(raw(4, 0, 0, 2**31 - 1))).error_code
        is ErrorCode.FLOW_CONTROL_ERROR
    )


def test_credit_is_reported_as_an_event(pair: Pair) -> None:
    events = pair.server.receive_data(raw(4, 0, 0, 1000))
    assert events == [CreditGranted(stream_id=0, increment=1000)]


def test_a_bulk_stream_does_not_starve_a_small_one(pair: Pair) -> None:
    bulk = pair.client.open_stream(request(1))
    small = pair.client.open_stream(request(2))
    pair.flush()
    pair.client.send_message(bulk, notification(blob="B" * 1_000_000))
    pair.client.send_message(small, notification(tiny=True))
    order = [f.stream_id for f in frames_of(pair.client.data_to_send()) if isinstance(f, Data)]
    assert order.index(small) <= 1  # one bulk frame at most goes first


def test_a_last_message_that_fits_goes_out_ahead_of_queued_bulk_data(pair: Pair) -> None:
    # A message that ends its stream, whole within credit and with nothing queued before
    # it on that stream, goes out with the control frames (as an OPEN does), not behind
    # another stream's bulk data; the stream is finished at once.
    pair.client.open_stream(request(1), end=True)
    pair.client.open_stream(request(2), end=True)
    pair.flush()
    pair.server.send_message(1, notification(blob="B" * 1_000_000))
    pair.server.send_message(3, result(3, ok=True), end=True)
    assert pair.server.stream_state(3) is None  # its END is framed: nothing left to do
    assert pair.server.buffered(1) > 0
    assert pair.server.buffered(3) == 0
    messages = pair.server.data_to_send()
    frames = [f for f in frames_of(messages) if isinstance(f, Data)]
    assert (frames[0].stream_id, frames[0].flags) == (3, Flag.END)
    assert all(f.stream_id == 1 for f in frames[1:])
    client_events = [e for m in messages for e in pair.client.receive_data(m)]
    ended = [e.stream_id for e in client_events if isinstance(e, StreamEnded)]
    assert ended == [3]  # stream 1's message is still coming (it has no END yet)


def test_a_last_message_queued_behind_data_or_beyond_credit_keeps_its_place() -> None:
    pair = Pair(client_settings=Settings(initial_window=65536))
    pair.flush()
    for rid in (1, 3, 5):
        pair.client.open_stream(request(rid), end=True)
    pair.flush()
    # Behind a message still queued on its own stream: after it, in order.
    pair.server.send_message(1, notification(blob="B" * 200_000))
    pair.server.send_message(1, result(1, ok=True), end=True)
    # Beyond the stream's credit (64 KiB): fragmented through the queue.
    pair.server.send_message(3, result(3, blob="C" * 100_000), end=True)
    # Fits: goes out at once.
    pair.server.send_message(5, result(5, ok=True), end=True)
    assert pair.server.stream_state(1) is not None
    assert pair.server.stream_state(3) is not None
    assert pair.server.stream_state(5) is None
    pair.auto_ack = True
    client_events, _ = pair.flush()
    received = [
        (e.stream_id, e.message.get("method", "result"))
        for e in client_events
        if isinstance(e, MessageReceived)
    ]
    assert received[0] == (5, "result")
    assert [r for r in received if r[0] == 1] == [(1, "notifications/progress"), (1, "result")]
    assert (3, "result") in received
    ended = [e.stream_id for e in client_events if isinstance(e, StreamEnded)]
    assert sorted(ended) == [1, 3, 5]
    assert ended[0] == 5
    assert pair.client.open_stream_count == pair.server.open_stream_count == 0


def test_small_frames_are_coalesced_and_messages_respect_the_peer_limit(pair: Pair) -> None:
    for i in range(500):
        pair.client.send_message(0, notification(i=i))
    messages = pair.client.data_to_send()
    assert len(messages) < 10
    assert all(len(m) <= 65536 + 1024 for m in messages)
    assert len(frames_of(messages)) == 500


# -- cancellation -----------------------------------------------------------------------


def test_client_cancel_reaches_the_server_and_discards_queued_data(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1), end=True)
    pair.flush()
    pair.server.send_message(sid, notification(blob="q" * 100_000))
    pair.client.cancel_stream(sid, reason="user pressed stop")
    _, server_events = pair.flush()
    assert server_events == [
        StreamCancelled(
            stream_id=sid, error_code=ErrorCode.CANCELLED, reason="user pressed stop", remote=True
        )
    ]
    assert pair.server.buffered(sid) == 0
    assert pair.client.open_stream_count == pair.server.open_stream_count == 0
    pair.client.cancel_stream(sid)  # again: nothing happens
    assert pair.client.data_to_send() == []


def test_server_cancel_reaches_the_client(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1), end=True)
    pair.flush()
    pair.server.cancel_stream(sid, ErrorCode.INTERNAL_ERROR, "handler crashed")
    client_events, _ = pair.flush()
    assert client_events == [
        StreamCancelled(
            stream_id=sid,
            error_code=ErrorCode.INTERNAL_ERROR,
            reason="handler crashed",
            remote=True,
        )
    ]
    with pytest.raises(StreamStateError):
        pair.client.send_message(sid, notification())


def test_data_in_flight_after_cancel_is_dropped_and_its_bytes_credited_back() -> None:
    pair = Pair(client_settings=Settings(connection_window=262144))
    pair.flush()
    sid = pair.client.open_stream(request(1), end=True)
    pair.flush()
    pair.server.send_message(sid, notification(blob="w" * 2_000_000))
    in_flight = pair.server.data_to_send()  # on the wire when the client cancels
    pair.client.cancel_stream(sid)
    dropped = 0
    for m in in_flight:
        assert pair.client.receive_data(m) == []
        dropped += sum(len(f.payload) for f in frames_of([m]) if isinstance(f, Data))
    assert dropped == 262144
    credits = [f for f in frames_of(pair.client.data_to_send()) if isinstance(f, Credit)]
    assert sum(f.increment for f in credits if f.stream_id == 0) == dropped


def test_unknown_cancel_codes_are_internal_errors(pair: Pair) -> None:
    sid = pair.client.open_stream(request(1))
    pair.flush()
    [event] = pair.client.receive_data(raw(3, sid, 0, 999, "?"))
    assert isinstance(event, StreamCancelled)
    assert event.error_code is ErrorCode.INTERNAL_ERROR


# -- ping, keepalive, timeouts ------------------------------------------------------------


def test_ping_is_acknowledged_and_measures_rtt(pair: Pair) -> None:
    opaque = pair.client.ping()
    messages = pair.client.data_to_send()
    pair.clock.advance(0.25)
    for m in messages:
        pair.server.receive_data(m)
    acks = frames_of(pair.server.data_to_send())
    assert acks == [Ping(opaque=opaque, ack=True)]
    [event] = pair.client.receive_data(encode_frame(acks[0]))
    assert event == PingAcknowledged(opaque=opaque, rtt=0.25)
    assert pair.client.rtt == 0.25


def test_hello_timeout_fails_the_connection(clock: FakeClock) -> None:
    server = Connection(Role.SERVER, clock=clock)
    assert server.next_deadline() == clock.now + 10
    clock.advance(9.9)
    assert server.tick() == []
    clock.advance(0.2)
    event = terminated(server.tick())
    assert event.error_code is ErrorCode.TIMEOUT
    assert isinstance(event.error, ProtocolTimeoutError)
    assert event.close_code == 1008


def test_keepalive_pings_after_silence_and_a_silent_peer_is_dead() -> None:
    p = Pair(client_settings=Settings(ping_interval=10))
    p.flush()
    start = p.clock.now
    assert p.client.next_deadline() == start + 10
    p.clock.advance(10)
    assert p.client.tick() == []
    assert [type(f) for f in frames_of(p.client.data_to_send())] == [Ping]
    assert p.client.next_deadline() == start + 25
    p.clock.advance(14.9)
    assert p.client.tick() == []
    p.clock.advance(0.2)
    assert terminated(p.client.tick()).error_code is ErrorCode.TIMEOUT


def test_any_received_frame_resets_the_keepalive() -> None:
    p = Pair(client_settings=Settings(ping_interval=10))
    p.flush()
    p.clock.advance(10)
    p.client.tick()
    p.flush()  # the ACK arrives
    p.clock.advance(24)
    assert p.client.tick() == []  # silent for only 24 s since the ACK
    assert p.client.state is ConnectionState.OPEN


def test_timer_epoch_moves_exactly_when_the_deadline_may_come_sooner() -> None:
    """The I/O layer re-reads `next_deadline` only when `timer_epoch` moved: at the
    peer's HELLO, and at the first traffic after a keepalive PING (the deadline then
    comes back from PING + interval + grace to one interval). Ordinary traffic only
    pushes the deadline later, and leaves the epoch alone."""
    p = Pair(client_settings=Settings(ping_interval=5))
    epoch = p.client.timer_epoch
    hello_deadline = p.client.next_deadline()
    p.flush()
    assert p.client.timer_epoch == epoch + 1
    keepalive = p.client.next_deadline()
    assert hello_deadline is not None
    assert keepalive is not None
    assert keepalive < hello_deadline  # 5 s of keepalive, sooner than the HELLO timeout
    epoch = p.client.timer_epoch
    sid = p.client.open_stream(request(), end=True)
    p.flush()
    p.server.send_message(sid, result(), end=True)
    p.flush()
    assert p.client.timer_epoch == epoch  # traffic: the deadline only moved later
    p.clock.advance(5)
    p.client.tick()
    assert [type(f) for f in frames_of(p.client.data_to_send())] == [Ping]
    late = p.client.next_deadline()
    assert p.client.timer_epoch == epoch  # sending the PING moved the deadline later
    p.clock.advance(1)
    p.server.ping()
    p.client.receive_data(b"".join(p.server.data_to_send()))
    assert p.client.timer_epoch == epoch + 1
    sooner = p.client.next_deadline()
    assert late is not None
    assert sooner is not None
    assert sooner < late


def test_output_due_is_has_data_to_send_or_is_finished_in_every_state() -> None:
    def check(conn: Connection) -> None:
        assert conn.output_due() == (conn.has_data_to_send or conn.is_finished)

    p = Pair()
    check(p.client)  # HELLO queued
    p.flush()
    check(p.client)  # nothing to send
    assert not p.client.output_due()
    sid = p.client.open_stream(request())
    check(p.client)  # an OPEN queued
    p.flush()
    p.client.close()  # GOAWAY queued, a stream still open
    check(p.client)
    p.flush()
    check(p.client)  # going away with a stream open: not finished
    assert not p.client.output_due()
    p.client.end_stream(sid)
    p.server.send_message(sid, result(), end=True)
    p.flush()
    check(p.client)  # every stream done after GOAWAY: finished
    assert p.client.is_finished
    assert p.client.output_due()
    failed = Pair()
    failed.flush()
    failed.client.close(ErrorCode.INTERNAL_ERROR, "bye")
    failed.client.data_to_send()
    check(failed.client)  # closed
    assert failed.client.output_due()


def test_ping_interval_zero_disables_keepalive() -> None:
    p = Pair(client_settings=Settings(ping_interval=0))
    p.flush()
    assert p.client.next_deadline() is None
    p.clock.advance(1e6)
    assert p.client.tick() == []


# -- goaway ---------------------------------------------------------------------------------


def test_graceful_goaway_lets_streams_finish_and_refuses_later_ones(pair: Pair) -> None:
    first = pair.client.open_stream(request(1), end=True)
    pair.flush()
    pair.server.close(reason="shutting down")
    later = pair.client.open_stream(request(2), end=True)  # crosses the GOAWAY
    client_events, server_events = pair.flush()
    assert GoAwayReceived(last_stream_id=first, reason="shutting down") in client_events
    refused = [e for e in client_events if isinstance(e, StreamCancelled)]
    assert [(e.stream_id, e.error_code) for e in refused] == [(later, ErrorCode.REFUSED_STREAM)]
    assert not any(isinstance(e, StreamOpened) for e in server_events)
    with pytest.raises(StreamStateError):
        pair.client.open_stream(request(3))
    assert not pair.server.is_finished
    pair.server.send_message(first, result(1), end=True)
    pair.flush()
    assert pair.server.is_finished
    assert pair.client.is_finished
    assert pair.server.close_code is None  # the I/O layer closes with 1000


@pytest.mark.parametrize("code", [c for c in ErrorCode if c is not ErrorCode.NO_ERROR])
def test_goaway_with_an_error_ends_the_connection_with_the_right_close_code(
    pair: Pair, code: ErrorCode
) -> None:
    pair.server.close(code, "bye")
    client_events, _ = pair.flush()
    event = terminated(client_events)
    assert (event.error_code, event.remote, event.reason) == (code, True, "bye")
    assert event.close_code == close_code_for(code)
    assert pair.client.state is ConnectionState.CLOSED
    assert pair.server.state is ConnectionState.CLOSED
    with pytest.raises(ConnectionClosedError):
        pair.client.open_stream(request(1))
    assert pair.client.receive_data(raw(5, 0, 0, 1)) == []


def test_close_codes_follow_the_table() -> None:
    assert {c: close_code_for(c) for c in ErrorCode} == {
        ErrorCode.NO_ERROR: 1000,
        ErrorCode.PROTOCOL_ERROR: 1002,
        ErrorCode.INTERNAL_ERROR: 1011,
        ErrorCode.FLOW_CONTROL_ERROR: 1002,
        ErrorCode.STREAM_CLOSED: 1002,
        ErrorCode.FRAME_SIZE_ERROR: 1009,
        ErrorCode.REFUSED_STREAM: 1011,
        ErrorCode.CANCELLED: 1011,
        ErrorCode.MESSAGE_TOO_LARGE: 1009,
        ErrorCode.ENHANCE_YOUR_CALM: 1008,
        ErrorCode.TIMEOUT: 1008,
        ErrorCode.UNAUTHORIZED: 1008,
    }
    assert set(CLOSE_CODES) <= set(ErrorCode)


def test_unknown_goaway_code_is_internal_error() -> None:
    server = server_after_hello()
    assert (
        terminated(server.receive_data(raw(6, 0, 0, 0, 4242, "?"))).error_code
        is ErrorCode.INTERNAL_ERROR
    )


def test_a_text_message_closes_with_1003_and_no_goaway() -> None:
    server = server_after_hello()
    event = terminated(server.receive_text())
    assert event.close_code == 1003
    assert server.data_to_send() == []


def test_frame_size_error_closes_with_1009() -> None:
    server = server_after_hello()
    event = terminated(server.receive_data(raw(2, 0, 0, b"x" * 70000)))
    assert (event.error_code, event.close_code) == (ErrorCode.FRAME_SIZE_ERROR, 1009)
    assert isinstance(event.error, FrameSizeError)
    assert sent_goaway(server).error_code == ErrorCode.FRAME_SIZE_ERROR


def test_unknown_frames_are_ignored() -> None:
    server = server_after_hello()
    assert server.receive_data(raw(42, 0, 0, "future")) == []
    assert server.state is ConnectionState.OPEN


# -- abuse limits ---------------------------------------------------------------------------


def calm(events: list[Event]) -> bool:
    return any(
        isinstance(e, ConnectionTerminated) and e.error_code is ErrorCode.ENHANCE_YOUR_CALM
        for e in events
    )


def test_rapid_open_cancel_flood_is_stopped() -> None:
    server = server_after_hello(max_streams=1000)
    events = []
    for i in range(1000):
        sid = 2 * i + 1
        events += server.receive_data(raw(1, sid, 0, payload(request(sid))) + raw(3, sid, 0, 7, ""))
        if calm(events):
            break
    assert calm(events)
    assert terminated(events).close_code == 1008
    assert sent_goaway(server).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_open_past_max_streams_flood_is_stopped() -> None:
    server = server_after_hello(max_streams=1)
    events = []
    for i in range(1000):
        events += server.receive_data(raw(1, 2 * i + 1, 0, payload(request(i))))
        if calm(events):
            break
    assert calm(events)


def test_cancels_at_a_modest_rate_are_fine(clock: FakeClock) -> None:
    server = server_after_hello(clock, max_streams=1000)
    for i in range(2000):
        sid = 2 * i + 1
        clock.advance(0.01)  # 100 per second, below the limit
        events = server.receive_data(raw(1, sid, 0, payload(request(sid))) + raw(3, sid, 0, 7, ""))
        assert not calm(events)


@pytest.mark.parametrize(
    "frame",
    [raw(5, 0, 0, 1), raw(99, 0, 0), raw(2, 0, 0, b""), raw(5, 0, 1, 12345)],
    ids=["PING flood", "unknown frame flood", "empty DATA flood", "unsolicited PING ACK flood"],
)
def test_floods_end_in_enhance_your_calm(frame: bytes) -> None:
    server = server_after_hello()
    events = []
    for _ in range(5000):
        events += server.receive_data(frame)
        if calm(events):
            break
    assert calm(events)


def test_a_peer_that_never_reads_its_control_replies_is_stopped() -> None:
    server = Connection(Role.SERVER, limits=Limits(ping_rate=1e9, ping_burst=10**9))
    server.receive_data(hello())
    events = []
    for i in range(1100):  # never calling data_to_send: the replies pile up
        events += server.receive_data(raw(5, 0, 0, i))
    assert calm(events)
    assert sent_goaway(server).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_replies_that_are_drained_do_not_count() -> None:
    server = Connection(Role.SERVER, limits=Limits(ping_rate=1e9, ping_burst=10**9))
    server.receive_data(hello())
    for i in range(3000):
        assert not calm(server.receive_data(raw(5, 0, 0, i)))
        server.data_to_send()


def test_a_connection_failed_before_its_hello_went_out_still_sends_hello_first() -> None:
    server = Connection(Role.SERVER)
    client = Connection(Role.CLIENT)
    server.receive_data(client.data_to_send()[0])
    events = server.receive_data(b"\xc1")  # garbage before the server sent anything
    assert isinstance(events[0], ConnectionTerminated)
    frames = frames_of(server.data_to_send())
    assert [type(f).__name__ for f in frames] == ["Hello", "GoAway"]
