"""The stream state machine: every legal transition in one table.

``TRANSITIONS[(state, input)] -> (outcome, next_state)``. A pair missing from the table
means the input is a mistake of the local application when it is a ``SEND_*`` input
(``Outcome.USAGE_ERROR``) and a stream error STREAM_CLOSED when it is a ``RECV_*`` one.
"""

from __future__ import annotations

import enum

__all__ = [
    "AFTER_RECV_END",
    "RECEIVING",
    "TRANSITIONS",
    "Outcome",
    "StreamInput",
    "StreamState",
    "transition",
]

# _IDENTITY_HASH: the enums below hash by identity. Members are singletons compared by
# identity anyway, and Enum's own __hash__ is Python code run on every table lookup
# (a dozen per round trip on the hot path); object's is C.


class StreamState(enum.Enum):
    """Where a stream is in its life (stream 0 is always OPEN and never transitions)."""

    __hash__ = object.__hash__  # see _IDENTITY_HASH

    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"  # we sent END
    HALF_CLOSED_REMOTE = "half-closed (remote)"  # the peer sent END
    CLOSED = "closed"  # both sent END
    RESET = "reset"  # CANCEL sent or received


class StreamInput(enum.Enum):
    """What happens to a stream: a frame sent or received."""

    __hash__ = object.__hash__  # see _IDENTITY_HASH

    SEND_DATA = "send data"
    SEND_END = "send end"
    SEND_CANCEL = "send cancel"
    RECV_DATA = "receive data"
    RECV_END = "receive end"
    RECV_CANCEL = "receive cancel"


class Outcome(enum.Enum):
    """What the connection does with the input."""

    __hash__ = object.__hash__  # see _IDENTITY_HASH

    OK = "ok"  # apply it
    IGNORE = "ignore"  # late frame for a finished stream: drop it (credit it back)
    STREAM_CLOSED = "stream closed"  # peer sent after its own END: CANCEL(STREAM_CLOSED)
    USAGE_ERROR = "usage error"  # the local application cannot do this now


S, I, O = StreamState, StreamInput, Outcome

TRANSITIONS: dict[tuple[StreamState, StreamInput], tuple[Outcome, StreamState]] = {
    # open: everything goes
    (S.OPEN, I.SEND_DATA): (O.OK, S.OPEN),
    (S.OPEN, I.SEND_END): (O.OK, S.HALF_CLOSED_LOCAL),
    (S.OPEN, I.RECV_DATA): (O.OK, S.OPEN),
    (S.OPEN, I.RECV_END): (O.OK, S.HALF_CLOSED_REMOTE),
    (S.OPEN, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.OPEN, I.RECV_CANCEL): (O.OK, S.RESET),
    # we ended: the peer may still send
    (S.HALF_CLOSED_LOCAL, I.RECV_DATA): (O.OK, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, I.RECV_END): (O.OK, S.CLOSED),
    (S.HALF_CLOSED_LOCAL, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_LOCAL, I.RECV_CANCEL): (O.OK, S.RESET),
    # the peer ended: it must not send again; we may
    (S.HALF_CLOSED_REMOTE, I.SEND_DATA): (O.OK, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, I.SEND_END): (O.OK, S.CLOSED),
    (S.HALF_CLOSED_REMOTE, I.RECV_DATA): (O.STREAM_CLOSED, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.RECV_END): (O.STREAM_CLOSED, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.SEND_CANCEL): (O.OK, S.RESET),
    (S.HALF_CLOSED_REMOTE, I.RECV_CANCEL): (O.OK, S.RESET),
    # finished: late frames from the peer are dropped, cancelling again is a no-op
    (S.CLOSED, I.RECV_DATA): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.RECV_END): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.RECV_CANCEL): (O.IGNORE, S.CLOSED),
    (S.CLOSED, I.SEND_CANCEL): (O.IGNORE, S.CLOSED),
    (S.RESET, I.RECV_DATA): (O.IGNORE, S.RESET),
    (S.RESET, I.RECV_END): (O.IGNORE, S.RESET),
    (S.RESET, I.RECV_CANCEL): (O.IGNORE, S.RESET),
    (S.RESET, I.SEND_CANCEL): (O.IGNORE, S.RESET),
}

#: The states in which received DATA is applied (it leaves the state as it is). Read off
#: the table, for the receive path, which checks this on every frame.
RECEIVING = frozenset(
    state
    for (state, event), (outcome, _) in TRANSITIONS.items()
    if event is I.RECV_DATA and outcome is O.OK
)

#: The state after a received END, for the states in which it is applied (the table's).
AFTER_RECV_END = {
    state: after
    for (state, event), (outcome, after) in TRANSITIONS.items()
    if event is I.RECV_END and outcome is O.OK
}

del S, I, O


def transition(state: StreamState, event: StreamInput) -> tuple[Outcome, StreamState]:
    """Look up one transition; pairs missing from the table keep the state."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if event.name.startswith("SEND"):
            return Outcome.USAGE_ERROR, state
        return Outcome.STREAM_CLOSED, StreamState.RESET
