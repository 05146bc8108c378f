"""Hypothesis properties: credit is never exceeded and always conserved; fuzzed input
raises only documented exceptions."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter
from pydantic import ValidationError

from mcp_ws.protocol import (
    Connection,
    ConnectionTerminated,
    Data,
    MessageReceived,
    Open,
    ProtocolError,
    Role,
    Settings,
    StreamCancelled,
    StreamStateError,
    decode_message,
)
from mcp_ws.protocol.frames import Credit
from mcp_ws.sdk.bridge import validate_message

from ..helpers import FakeClock, frames_of, notification, request

SMALL = Settings(initial_window=16384, connection_window=32768, max_frame_size=16384)

op = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["client", "server"]), st.integers(0, 40_000)),
    st.tuples(
        st.just("send"),
        st.sampled_from(["client", "server"]),
        st.integers(0, 7),
        st.integers(0, 40_000),
    ),
    st.tuples(st.just("end"), st.sampled_from(["client", "server"]), st.integers(0, 7)),
    st.tuples(st.just("cancel"), st.sampled_from(["client", "server"]), st.integers(0, 7)),
    st.tuples(st.just("deliver"), st.sampled_from(["client", "server"]), st.integers(1, 4)),
    st.tuples(st.just("ack"), st.sampled_from(["client", "server"]), st.integers(1, 4)),
)


class World:
    """Two peers and a wire in each direction that the test delivers from by hand."""

    def __init__(self) -> None:
        clock = FakeClock()
        self.peers = {
            "client": Connection(Role.CLIENT, SMALL, clock=clock),
            "server": Connection(Role.SERVER, SMALL, clock=clock),
        }
        self.wire: dict[str, deque[bytes]] = {"client": deque(), "server": deque()}  # by sender
        self.streams: dict[str, list[int]] = {"client": [], "server": []}
        self.unacked: dict[str, deque[MessageReceived]] = {"client": deque(), "server": deque()}
        self.sent_payload = {"client": 0, "server": 0}
        self.rid = 0

    @classmethod
    def after(cls, ops: list[tuple[Any, ...]]) -> World:
        """A world past both HELLOs that ran ``ops``, checking credit after each."""
        world = cls()
        world.step(("deliver", "client", 4))
        world.step(("deliver", "server", 4))
        for action in ops:
            world.step(action)
            world.check_conservation()
        return world

    @staticmethod
    def other(side: str) -> str:
        return "server" if side == "client" else "client"

    def collect(self, side: str) -> None:
        for m in self.peers[side].data_to_send():
            for f in frames_of([m]):
                if isinstance(f, Open | Data):
                    self.sent_payload[side] += len(f.payload)
            self.wire[side].append(m)

    def step(self, action: tuple[Any, ...]) -> None:
        kind, side = action[0], action[1]
        conn = self.peers[side]
        self.rid += 1

        def blob(n: int) -> dict[str, Any]:
            return notification(blob="x" * n)

        try:
            if kind == "open" and conn.can_open_stream:
                self.streams[side].append(conn.open_stream(request(self.rid, blob="y" * action[2])))
            elif kind == "send":
                known = self.streams[side] + self.streams[self.other(side)]
                if known:
                    sid = known[action[2] % len(known)]
                    if conn.stream_state(sid) is not None:
                        conn.send_message(sid, blob(action[3]))
            elif kind == "end" and self.streams[side]:
                sid = self.streams[side][action[2] % len(self.streams[side])]
                conn.end_stream(sid)
            elif kind == "cancel":
                known = self.streams[side] + self.streams[self.other(side)]
                if known:
                    conn.cancel_stream(known[action[2] % len(known)])
            elif kind == "deliver":
                self.collect(side)
                for _ in range(action[2]):
                    if not self.wire[side]:
                        break
                    self.receive(self.other(side), self.wire[side].popleft())
            elif kind == "ack":
                receiver = side
                for _ in range(action[2]):
                    if self.unacked[receiver]:
                        e = self.unacked[receiver].popleft()
                        self.peers[receiver].acknowledge_received(
                            e.stream_id, e.flow_controlled_length
                        )
        except StreamStateError:
            pass  # e.g. sending on a stream the peer just cancelled: the API says no
        self.collect(side)

    def receive(self, side: str, message: bytes) -> None:
        for event in self.peers[side].receive_data(message):
            assert not isinstance(event, ConnectionTerminated), event
            if isinstance(event, StreamCancelled):
                assert event.remote, event  # we never violate the protocol ourselves
            if isinstance(event, MessageReceived):
                self.unacked[side].append(event)
            if (
                hasattr(event, "stream_id")
                and event.stream_id
                and event.stream_id not in self.streams[self.other(side)] + self.streams[side]
            ):
                self.streams[self.other(side)].append(event.stream_id)

    def check_conservation(self) -> None:
        self.collect("client")
        self.collect("server")
        for side in ("client", "server"):
            peer = self.peers[side]
            # everything delivered and not acknowledged is held, and never above the bound
            held = sum(
                e.flow_controlled_length
                for e in self.unacked[side]
                if peer.stream_state(e.stream_id) is not None
                or e.stream_id in peer._streams.lingering
            )
            assert peer.buffered_received == held + peer._assembly.buffered
            assert peer.buffered_received <= SMALL.receive_memory_bound
        for sender in ("client", "server"):
            receiver = self.other(sender)
            in_flight = sum(
                len(f.payload)
                for f in frames_of(list(self.wire[sender]))
                if isinstance(f, Open | Data)
            )
            credit_in_flight = sum(
                f.increment
                for f in frames_of(list(self.wire[receiver]))
                if isinstance(f, Credit) and f.stream_id == 0
            )
            send_credit = self.peers[sender]._flow.connection_credit
            assert send_credit >= 0
            remaining = self.peers[receiver]._flow.receive_credit(0)
            # what the receiver still allows = what the sender may send + bytes on the
            # wire toward the receiver + credit on the wire back toward the sender
            assert remaining == send_credit + in_flight + credit_in_flight

    def drain(self) -> None:
        for _ in range(200):
            for side in ("client", "server"):
                self.step(("ack", side, 10**6))
                self.collect(side)
                while self.wire[side]:
                    self.receive(self.other(side), self.wire[side].popleft())
            quiet = not any(peer.has_data_to_send for peer in self.peers.values())
            if quiet and not any(self.wire.values()) and not any(self.unacked.values()):
                break
        for side in ("client", "server"):
            while self.unacked[side]:
                e = self.unacked[side].popleft()
                self.peers[side].acknowledge_received(e.stream_id, e.flow_controlled_length)


@pytest.mark.timeout(300)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=80))
def test_credit_is_never_exceeded_and_always_conserved(ops: list[tuple[Any, ...]]) -> None:
    world = World.after(ops)
    # Once every delivered message is consumed, all credit comes back: nothing leaks,
    # including bytes dropped after a CANCEL.
    world.drain()
    for side in ("client", "server"):
        flow = world.peers[side]._flow
        assert flow.receive_credit(0) + flow._recv_conn.recv_due == SMALL.connection_window
        assert world.peers[side].buffered_received == 0


@pytest.mark.timeout(300)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op.filter(lambda action: action[0] != "ack"), max_size=80))
def test_unread_streams_never_hold_connection_credit(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the streams hold unread, the connection window is whole again once the
    wires are empty: no set of paused streams can block another stream."""
    world = World.after(ops)
    for _ in range(200):  # deliver everything, acknowledge nothing
        for side in ("client", "server"):
            world.collect(side)
            while world.wire[side]:
                world.receive(world.other(side), world.wire[side].popleft())
        if not any(world.wire.values()) and not any(
            p.has_data_to_send for p in world.peers.values()
        ):
            break
    for side in ("client", "server"):
        flow = world.peers[side]._flow
        assert flow.receive_credit(0) + flow._recv_conn.recv_due == SMALL.connection_window


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data, max_frame_size=16384)


frame_field = st.one_of(
    st.integers(-5, 2**32),
    st.binary(max_size=64),
    st.text(max_size=16),
    st.none(),
    st.booleans(),
    st.dictionaries(st.text(max_size=8), st.integers(-5, 2**32), max_size=3),
    st.lists(st.integers(-5, 2**32), max_size=3),
)
random_frame = st.builds(
    lambda t, sid, flags, rest: msgpack.packb([t, sid, flags, *rest], use_bin_type=True),
    st.integers(0, 8),
    st.integers(0, 9),
    st.integers(0, 3),
    st.lists(frame_field, max_size=4),
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.lists(random_frame, min_size=1, max_size=4).map(b"".join), max_size=12),
    st.sampled_from([Role.CLIENT, Role.SERVER]),
)
def test_random_frame_sequences_never_raise_out_of_receive_data(
    messages: list[bytes], role: Role
) -> None:
    conn = Connection(role, clock=FakeClock())
    for m in messages:
        events = conn.receive_data(m)
        for e in events:
            if isinstance(e, ConnectionTerminated) and e.error is not None:
                assert isinstance(e.error, ProtocolError)
        # The end, if it came, is the batch's last event (the I/O layer looks only there).
        ends = [i for i, e in enumerate(events) if isinstance(e, ConnectionTerminated)]
        assert ends in ([], [len(events) - 1]), events
        conn.data_to_send()


# JSON-RPC envelopes after MessagePack decoding: each kind well-formed, then with any
# field replaced or dropped and extra keys added (wrong types, both result and error...).
_odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
_id = st.one_of(st.integers(-(2**63), 2**63), st.text(max_size=4))
_dict = st.dictionaries(st.text(max_size=3), _odd, max_size=2)
_params = st.one_of(st.none(), _dict, _odd)
_error = st.one_of(
    st.fixed_dictionaries(
        {
            "code": st.one_of(st.integers(), st.floats(allow_nan=False)),
            "message": st.text(max_size=4),
        },
        optional={"data": _odd},
    ),
    _odd,
)
_kinds = st.one_of(
    st.fixed_dictionaries({"id": _id, "method": st.text(max_size=8)}, optional={"params": _params}),
    st.fixed_dictionaries({"method": st.text(max_size=8)}, optional={"params": _params}),
    st.fixed_dictionaries({"id": _id, "result": _dict}),
    st.fixed_dictionaries({"id": _id, "error": _error}),
)
_keys = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "extra"])


@st.composite
def _envelope(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0"])),
        **draw(_kinds),
    }
    for key in draw(st.lists(_keys, max_size=2)):
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(st.one_of(_odd, _id, _params, _error))
    return obj


def _outcome(validate: Callable[[], JSONRPCMessage]) -> JSONRPCMessage | ValidationError:
    try:
        return validate()
    except ValidationError as exc:
        return exc


@settings(max_examples=1500, deadline=None)
@given(_envelope())
def test_fast_message_validation_matches_the_sdk_union(obj: dict[str, Any]) -> None:
    """`validate_message` gives what the SDK's union adapter gives (same model, same
    fields) and rejects exactly what it rejects."""
    expected = _outcome(lambda: jsonrpc_message_adapter.validate_python(obj, by_name=False))
    got = _outcome(lambda: validate_message(obj))
    if isinstance(expected, ValidationError):
        assert isinstance(got, ValidationError)
        assert got.errors() == expected.errors()
        return
    assert not isinstance(got, ValidationError)
    assert type(got) is type(expected)
    assert got.model_dump() == expected.model_dump()
    assert got.model_fields_set == expected.model_fields_set
