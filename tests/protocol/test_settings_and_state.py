"""HELLO settings validation, and the stream transition table."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_ws.protocol import ProtocolError, Settings, StreamState
from mcp_ws.protocol.state import (
    AFTER_RECV_END,
    RECEIVING,
    TRANSITIONS,
    Outcome,
    StreamInput,
    transition,
)


def test_defaults_match_the_protocol() -> None:
    s = Settings()
    assert s.to_wire() == {
        "version": 1,
        "max_streams": 128,
        "initial_window": 262144,
        "connection_window": 4194304,
        "max_frame_size": 65536,
        "max_message_size": 16777216,
        "ping_interval": 15,
        "extensions": [],
    }
    assert s.reassembly_budget == 4 * 16777216


def test_from_wire_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    s = Settings.from_wire({"max_streams": 4, "future_knob": [1, 2], "extensions": ["resume"]})
    assert s.max_streams == 4
    assert s.extensions == ("resume",)
    assert s.initial_window == 262144


def test_a_higher_version_speaks_ours() -> None:
    assert Settings.from_wire({"version": 7}).version == 1


BAD_SETTINGS = [
    {"version": 0},
    {"max_streams": 0},
    {"max_streams": "8"},
    {"max_streams": True},
    {"initial_window": 100},
    {"initial_window": 2**31},
    {"connection_window": 16383},
    {"max_frame_size": 16383},
    {"max_frame_size": 16777216},
    {"max_message_size": 1023},
    {"max_message_size": 2**32},
    {"ping_interval": -1},
    {"ping_interval": "15"},
    {"ping_interval": float("nan")},
    {"extensions": "resume"},
    {"extensions": [1]},
    {"extensions": ["x" * 257]},
    {"extensions": ["e"] * 65},
]


@pytest.mark.parametrize("wire", BAD_SETTINGS, ids=repr)
def test_bad_peer_settings_are_protocol_errors(wire: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="bad HELLO"):
        Settings.from_wire(wire)


@pytest.mark.parametrize("wire", BAD_SETTINGS, ids=repr)
def test_bad_local_settings_are_value_errors(wire: dict[str, Any]) -> None:
    kwargs = dict(wire)
    if isinstance(kwargs.get("extensions"), list):
        kwargs["extensions"] = tuple(kwargs["extensions"])
    with pytest.raises(ValueError):
        Settings(**kwargs)


S, I, O = StreamState, StreamInput, Outcome

EXPECTED = {
    # every (state, input) pair: outcome and next state
    (S.OPEN, I.SEND_DATA): (O.OK, S.OPEN),
    (S.OPEN, I.SEND_END): (O.OK, S.HALF_CLOSED_LOCAL),
    (S.OPEN, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.OPEN, I.RECV_DATA): (O.OK, S.OPEN),
    (S.OPEN, I.RECV_END): (O.OK, S.HALF_CLOSED_REMOTE),
    (S.OPEN, I.RECV_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_LOCAL, I.SEND_DATA): (O.USAGE_ERROR, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, I.SEND_END): (O.USAGE_ERROR, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_LOCAL, I.RECV_DATA): (O.OK, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, I.RECV_END): (O.OK, S.CLOSED),
    (S.HALF_CLOSED_LOCAL, I.RECV_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.SEND_DATA): (O.OK, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, I.SEND_END): (O.OK, S.CLOSED),
    (S.HALF_CLOSED_REMOTE, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.RECV_DATA): (O.STREAM_CLOSED, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.RECV_END): (O.STREAM_CLOSED, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.RECV_CANCEL): (O.OK, S.RESET),
    (S.CLOSED, I.SEND_DATA): (O.USAGE_ERROR, S.CLOSED),
    (S.CLOSED, I.SEND_END): (O.USAGE_ERROR, S.CLOSED),
    (S.CLOSED, I.SEND_CANCEL): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.RECV_DATA): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.RECV_END): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.RECV_CANCEL): (O.IGNORE, S.CLOSED),
    (S.RESET, I.SEND_DATA): (O.USAGE_ERROR, S.RESET),
    (S.RESET, I.SEND_END): (O.USAGE_ERROR, S.RESET),
    (S.RESET, I.SEND_CANCEL): (O.IGNORE, S.RESET),
    (S.RESET, I.RECV_DATA): (O.IGNORE, S.RESET),
    (S.RESET, I.RECV_END): (O.IGNORE, S.RESET),
    (S.RESET, I.RECV_CANCEL): (O.IGNORE, S.RESET),
}


def test_expected_covers_every_pair() -> None:
    assert set(EXPECTED) == {(s, i) for s in StreamState for i in StreamInput}


@pytest.mark.parametrize(("key", "expected"), EXPECTED.items(), ids=str)
def test_transition(
    key: tuple[StreamState, StreamInput], expected: tuple[Outcome, StreamState]
) -> None:
    assert transition(*key) == expected


def test_the_receive_path_shortcuts_say_what_the_table_says() -> None:
    # The receive path checks RECEIVING and AFTER_RECV_END instead of calling transition.
    for state in StreamState:
        outcome, after = transition(state, StreamInput.RECV_DATA)
        assert (state in RECEIVING) == (outcome is Outcome.OK)
        if state in RECEIVING:
            assert after is state  # DATA leaves the state as it is
        outcome, after = transition(state, StreamInput.RECV_END)
        assert AFTER_RECV_END.get(state) == (after if outcome is Outcome.OK else None)
    assert {StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL} == RECEIVING


def test_table_holds_no_usage_errors() -> None:
    # Usage errors are exactly the pairs left out of the table.
    assert all(outcome is not Outcome.USAGE_ERROR for outcome, _ in TRANSITIONS.values())


def test_the_documented_receive_memory_bounds() -> None:
    """docs/protocol.md section 6 quotes these figures."""
    from mcp_ws.sdk.server import DEFAULT_SETTINGS as BINDING_DEFAULTS

    assert Settings().receive_memory_bound == 138_412_032
    assert BINDING_DEFAULTS.receive_memory_bound == 406_847_488
    small = Settings(
        max_streams=4, initial_window=16384, connection_window=32768, max_message_size=1024
    )
    assert small.receive_memory_bound == 2 * 4 * 16384 + 32768 + 4 * 1024
