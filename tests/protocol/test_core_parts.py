"""The protocol core's parts on their own: the stream table, message assembly with early
credit, the abuse guards, and coalescing frames into WebSocket messages."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_ws.protocol import events
from mcp_ws.protocol.assembly import MessageAssembler
from mcp_ws.protocol.errors import EnhanceYourCalmError, ProtocolError, StreamStateError
from mcp_ws.protocol.frames import coalesce
from mcp_ws.protocol.limits import Guards, Limits
from mcp_ws.protocol.scheduler import Scheduler
from mcp_ws.protocol.state import StreamInput, StreamState
from mcp_ws.protocol.streams import Stream, StreamTable
from mcp_ws.protocol.windows import FlowControl

pytestmark = pytest.mark.timeout(10)


# ---------------------------------------------------------------------- streams


def test_a_stream_checks_what_it_may_send() -> None:
    stream = Stream(1, local=True)
    assert stream.after_sending(StreamInput.SEND_DATA, StreamInput.SEND_END) is (
        StreamState.HALF_CLOSED_LOCAL
    )
    assert stream.state is StreamState.OPEN  # only asked, not moved
    stream.state = StreamState.HALF_CLOSED_LOCAL
    with pytest.raises(StreamStateError, match="stream 1"):
        stream.after_sending(StreamInput.SEND_DATA)


def test_a_stream_counts_early_credit_first_when_consumed() -> None:
    stream = Stream(3, local=False)
    stream.delivered(100, early=60)
    assert stream.consumed(50) == 50  # all of it was credited back already
    assert stream.consumed(30) == 10
    assert (stream.unacked, stream.early) == (20, 0)
    stream.delivered(10, early=10)
    assert stream.abandon() == (30, 10)
    assert (stream.unacked, stream.early) == (0, 0)


def test_the_table_hands_out_ids_by_parity_and_checks_theirs() -> None:
    client = StreamTable(local_parity=1, auto_release=True, remember=4)
    assert [client.open_local().id for _ in range(3)] == [1, 3, 5]
    assert client.local_active == {1, 3, 5}
    client.check_known(5)
    with pytest.raises(ProtocolError, match="never opened"):
        client.check_known(7)
    with pytest.raises(ProtocolError, match="wrong parity"):
        client.check_remote_id(9)
    client.check_remote_id(4)
    with pytest.raises(ProtocolError, match="must increase"):
        client.check_remote_id(2)
    assert len(client) == 3


def test_a_slot_is_held_until_the_peer_is_done_and_everything_is_consumed() -> None:
    table = StreamTable(local_parity=1, auto_release=True, remember=4)
    stream = table.open_local()
    stream.delivered(10, early=0)
    stream.state = StreamState.CLOSED
    table.finish(stream)
    assert table.get(stream.id) is None
    assert table.find(stream.id) is stream  # lingering: its message is unconsumed
    assert stream.id in table.local_active
    stream.consumed(10)
    table.consumed_all(stream)
    assert table.find(stream.id) is None
    assert not table.local_active


def test_their_streams_wait_for_release_without_auto_release() -> None:
    table = StreamTable(local_parity=0, auto_release=False, remember=4)
    table.check_remote_id(1)
    stream = table.open_remote(1)
    stream.state = StreamState.CLOSED
    table.finish(stream)
    assert table.remote_active == {1}  # the handler has not finished
    table.release(1)
    assert not table.remote_active


def test_the_memory_of_closed_streams_is_bounded() -> None:
    table = StreamTable(local_parity=1, auto_release=True, remember=2)
    for sid in (2, 4, 6):
        table.remember_closed(sid)
    assert [table.recently_closed(sid) for sid in (2, 4, 6)] == [False, True, True]


# ---------------------------------------------------------------------- assembly


def test_fragments_come_back_whole_with_their_early_credit() -> None:
    assembly = MessageAssembler(max_message_size=100, budget=50)
    stream = Stream(1, local=False)
    assert assembly.add(stream, b"a" * 30) is None
    assert assembly.credit_early(stream, 30)
    assert assembly.add(stream, b"b") is None
    body, early = assembly.complete(stream)
    assert (body, early) == (b"a" * 30 + b"b", 30)
    assert (assembly.buffered, assembly.early) == (0, 30)  # early until consumed
    assert stream.partial is None
    # The next message's fragments fit the budget, but their early credit would not.
    assert assembly.add(stream, b"c" * 30) is None
    assert not assembly.credit_early(stream, 30)
    assert (stream.partial_early, stream.partial_withheld) == (0, 30)
    assembly.settle(early)  # the first message is consumed
    assert assembly.credit_early(stream, 10)
    assert assembly.early == 10


def test_a_message_or_the_budget_overflowing_is_reported() -> None:
    assembly = MessageAssembler(max_message_size=10, budget=15)
    one, two = Stream(1, local=False), Stream(3, local=False)
    assert assembly.add(one, b"x" * 11) == "message above max_message_size"
    assembly.drop(one)
    assert assembly.add(one, b"x" * 8) is None
    assert assembly.add(two, b"y" * 8) == "reassembly budget exhausted"


def test_dropping_returns_what_was_withheld_and_forgets_the_early_credit() -> None:
    assembly = MessageAssembler(max_message_size=100, budget=20)
    stream = Stream(0, local=False)
    for _ in range(3):
        assembly.add(stream, b"z" * 10)
        assembly.credit_early(stream, 10)
    assert assembly.drop(stream) == 10
    assert (assembly.buffered, assembly.early) == (0, 0)
    assert assembly.drop(stream) == 0


# ---------------------------------------------------------------------- guards


def test_each_guard_allows_its_burst_then_objects() -> None:
    now = [0.0]
    limits = Limits(cancel_burst=2, ping_burst=1, useless_frame_burst=3, max_queued_control=2)
    guards = Guards(limits, lambda: now[0])
    guards.cancel()
    guards.cancel()
    with pytest.raises(EnhanceYourCalmError, match="cancelled too fast"):
        guards.cancel()
    guards.ping()
    with pytest.raises(EnhanceYourCalmError, match="PING flood"):
        guards.ping()
    now[0] += 1.0  # a second refills at the configured rates
    guards.ping()
    guards.cancel()
    for _ in range(3):
        guards.useless("empty DATA frame")
    with pytest.raises(EnhanceYourCalmError, match=r"useless frames \(empty DATA frame\)"):
        guards.useless("empty DATA frame")


def test_queued_replies_count_until_they_are_sent() -> None:
    guards = Guards(Limits(max_queued_control=2), lambda: 0.0)
    guards.reply()
    guards.reply()
    guards.replies_sent()
    guards.reply()
    guards.reply()
    with pytest.raises(EnhanceYourCalmError, match="does not read"):
        guards.reply()


# ---------------------------------------------------------------------- coalescing


def test_frames_are_packed_in_order_under_the_limit() -> None:
    frames = [b"a" * 4, b"b" * 4, b"c" * 9, b"d" * 2, b"e" * 2]
    assert coalesce(frames, 10) == [b"aaaabbbb", b"c" * 9, b"ddee"]
    assert coalesce([b"x" * 20], 10) == [b"x" * 20]  # too long goes alone
    assert coalesce([], 10) == []
    assert b"".join(coalesce(frames, 10)) == b"".join(frames)


# ---------------------------------------------------------------------- the scheduler


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["push", "pop", "drop"]),
            st.integers(1, 6),
            st.integers(0, 300),
        ),
        max_size=60,
    )
)
def test_the_scheduler_keeps_its_total_in_step_with_every_queue(
    ops: list[tuple[str, int, int]],
) -> None:
    """`buffered()` of all streams is a running total (it is asked on every send);
    whatever is pushed, framed or dropped, it equals the sum over the streams."""
    scheduler = Scheduler()
    credit = dict.fromkeys(range(7), 0)
    for op, sid, size in ops:
        if op == "push":
            scheduler.push(sid, b"x" * size, end=size % 2 == 0)
        elif op == "drop":
            scheduler.drop(sid)
        else:
            credit.update(dict.fromkeys(credit, size))
            scheduler.pop_frames(lambda s: credit[s], lambda s, n: None, 100)
        each = sum(scheduler.buffered(s) for s in range(1, 7))
        assert scheduler.buffered() == each


def test_the_receive_path_builds_the_same_events_as_the_keyword_constructors() -> None:
    message = {"jsonrpc": "2.0", "method": "ping"}
    built: list[tuple[events.Event, events.Event]] = [
        (events.stream_opened(7), events.StreamOpened(stream_id=7)),
        (
            events.message_received(7, message, 31),
            events.MessageReceived(stream_id=7, message=message, flow_controlled_length=31),
        ),
        (events.stream_ended(7), events.StreamEnded(stream_id=7)),
    ]
    for fast, reference in built:
        assert type(fast) is type(reference)
        # Every field set (a field added to the class and not to its builder fails here).
        for field in fields(reference):
            assert getattr(fast, field.name) == getattr(reference, field.name)
        assert fast == reference
        assert repr(fast) == repr(reference)


def flow_control(
    *, local: tuple[int, int], peer: tuple[int, int], streams: tuple[int, ...]
) -> tuple[FlowControl, dict[int, Stream]]:
    """Windows with (initial, connection) sizes for each direction, and the live streams
    they read: stream 0 (which has no windows) and ``streams``, each carrying its own, as
    in a connection's stream table."""
    live = {sid: Stream(sid, local=False) for sid in (0, *streams)}
    flow = FlowControl(
        live,
        local_initial_window=local[0],
        local_connection_window=local[1],
        peer_initial_window=peer[0],
        peer_connection_window=peer[1],
    )
    for sid in streams:
        flow.add_stream(live[sid])
    return flow, live


def test_spending_is_checked_against_both_windows_and_nothing_may_always_be_spent() -> None:
    flow, _ = flow_control(local=(1000, 4000), peer=(100, 150), streams=(1, 3))
    with pytest.raises(AssertionError):
        flow.consume_send(1, 101)  # beyond the stream's window
    flow.consume_send(1, 100)
    with pytest.raises(AssertionError):
        flow.consume_send(3, 51)  # within its own window, beyond the connection's
    flow.consume_send(3, 50)
    assert flow.available_credit(3) == 0
    flow.peer_settings_changed(initial_window=10, connection_window=100)  # windows shrink
    assert flow.available_credit(3) == 0  # negative credit reads as none
    flow.consume_send(3, 0)  # an OPEN with no room for payload bytes spends nothing
    with pytest.raises(AssertionError):
        flow.consume_send(3, 1)


def test_a_connection_grant_is_due_once_a_quarter_of_the_window_came_in() -> None:
    flow, _ = flow_control(local=(1000, 400), peer=(100, 100), streams=(2,))
    assert flow.data_received(2, 60) == []
    assert flow.data_received(2, 39) == []
    assert flow.data_received(2, 1) == [(0, 100)]  # 100 bytes: a quarter of 400
    assert flow.data_received(2, 0) == []
    assert flow.receive_credit(0) == 400


def test_a_streams_windows_live_and_end_with_it() -> None:
    flow, live = flow_control(local=(1000, 4000), peer=(100, 1000), streams=(1, 3))
    assert (live[1].send_credit, live[1].recv_left, live[1].recv_due) == (100, 1000, 0)
    flow.consume_send(1, 40)
    assert flow.available_credit(1) == 60
    assert flow.data_received(3, 300) == []
    assert flow.acknowledge_received(3, 300) == [(3, 300)]  # a quarter of its window
    assert live[3].recv_left == 1000
    del live[3]  # finished: its windows went with it
    assert flow.available_credit(3) == 0
    assert flow.credit_received(3, 10) is False
    assert flow.acknowledge_received(3, 500) == []
    assert flow.receive_credit(3) == 0
    flow.peer_settings_changed(initial_window=150, connection_window=1000)
    assert flow.available_credit(1) == 110  # moved by the difference; stream 0 has none
    assert not hasattr(live[0], "send_credit")
