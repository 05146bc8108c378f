"""Stream bookkeeping: one `Stream` per live stream, and the `StreamTable` of a connection.

A stream owns its state (the transition table in ``state``), the fragments of the message
it is reassembling, and the count of delivered bytes the application has not consumed.
The table owns the ids (ours odd or even by role, theirs increasing), the streams that
hold a ``max_streams`` slot, the closed streams whose messages are still unconsumed, and
a short memory of recently closed ids (frames for them are late, not abuse).

The slot rule (docs/protocol.md section 5): a stream of ours holds a slot until the
peer is done with it on the wire, one of theirs until it is closed (and released); either
way until everything that arrived on it has been consumed, since that may hold up to a
stream window of our memory.
"""

from __future__ import annotations

from collections import deque

from .errors import ProtocolError, StreamStateError
from .state import Outcome, StreamInput, StreamState, transition

__all__ = ["Stream", "StreamTable"]

_OPEN = StreamState.OPEN  # a global: quicker than the enum class's attribute (connection.py)
_PEER_DONE = frozenset({StreamState.HALF_CLOSED_REMOTE, StreamState.CLOSED, StreamState.RESET})


class Stream:
    """One stream: its state, its message being reassembled, its unconsumed bytes, and
    its credit windows (``windows.Windows``: set by ``FlowControl.add_stream`` when the
    stream opens; stream 0 has none, the connection's windows stand for it)."""

    __slots__ = (
        "discarding",
        "early",
        "id",
        "local",
        "partial",
        "partial_early",
        "partial_withheld",
        "recv_due",
        "recv_left",
        "recv_window",
        "send_credit",
        "state",
        "unacked",
    )
    send_credit: int
    recv_window: int
    recv_left: int
    recv_due: int

    # Built twice per round trip: the hot paths pass ``local`` by position, since a class
    # called with keywords builds a dict for them (about 1,000 instructions on 3.11).
    def __init__(self, stream_id: int, local: bool) -> None:
        self.id = stream_id
        self.local = local
        """Opened by us."""
        self.state = _OPEN
        self.partial: bytearray | None = None
        """Fragments of the message being reassembled (see ``assembly``)."""
        self.partial_early = 0
        """Bytes of ``partial`` credited back already."""
        self.partial_withheld = 0
        """Bytes of ``partial`` not credited back yet."""
        self.discarding = False
        """Stream 0 only: dropping the rest of an oversized message."""
        self.unacked = 0
        """Delivered bytes the application has not acknowledged."""
        self.early = 0
        """Of ``unacked``, bytes credited back before they were consumed."""

    @property
    def peer_done(self) -> bool:
        """Whether the peer will send nothing more on this stream."""
        return self.state in _PEER_DONE

    def after_sending(self, *inputs: StreamInput) -> StreamState:
        """The state this stream would be in after sending ``inputs``; raises
        ``StreamStateError`` if that is illegal now."""
        state = self.state
        for event in inputs:
            outcome, state = transition(state, event)
            if outcome is not Outcome.OK:
                raise StreamStateError(
                    f"cannot {event.value} on stream {self.id} ({self.state.value})"
                )
        return state

    def delivered(self, size: int, early: int) -> None:
        """A message of ``size`` bytes went to the application, ``early`` of them
        credited back already."""
        self.unacked += size
        self.early += early

    def consumed(self, size: int) -> int:
        """The application consumed ``size`` delivered bytes; returns how many of them
        were credited back early (the rest are owed to the peer now)."""
        self.unacked -= size
        early = min(size, self.early)
        self.early -= early
        return early

    def abandon(self) -> tuple[int, int]:
        """Forget the unconsumed bytes (the stream was reset); returns (unacked, early)."""
        held = self.unacked, self.early
        self.unacked = self.early = 0
        return held


class StreamTable:
    """The streams of one connection, by id, with their ``max_streams`` slots."""

    def __init__(self, *, local_parity: int, auto_release: bool, remember: int) -> None:
        self._parity = local_parity
        self._auto_release = auto_release
        self._remember = remember
        self.live: dict[int, Stream] = {0: Stream(0, local=False)}
        """Streams not finished yet (stream 0 always)."""
        self.lingering: dict[int, Stream] = {}
        """Finished streams whose delivered messages are not all consumed."""
        self.next_local = 1 if local_parity else 2
        self.highest_remote = 0
        self.local_active: set[int] = set()
        """Our streams holding a slot."""
        self.remote_active: set[int] = set()
        """Their streams holding a slot."""
        self._unreleased: set[int] = set()
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()

    def __len__(self) -> int:
        """Live streams other than 0."""
        return len(self.live) - 1

    def get(self, sid: int) -> Stream | None:
        """A live stream."""
        return self.live.get(sid)

    def find(self, sid: int) -> Stream | None:
        """A live stream, or a finished one whose messages are not all consumed."""
        return self.live.get(sid) or self.lingering.get(sid)

    def is_local_id(self, sid: int) -> bool:
        """Whether ``sid`` is an id of ours (by parity)."""
        return sid % 2 == self._parity

    def check_known(self, sid: int) -> None:
        """Raise ``ProtocolError`` for a stream that was never opened."""
        highest = self.next_local - 2 if self.is_local_id(sid) else self.highest_remote
        if sid > highest:
            raise ProtocolError(f"frame for stream {sid}, which was never opened", stream_id=sid)

    def recently_closed(self, sid: int) -> bool:
        """Whether ``sid`` finished recently (a frame for it is late, not abuse)."""
        return sid in self._recent_set

    def open_local(self) -> Stream:
        """A new stream of ours, holding a slot."""
        stream = Stream(self.next_local, True)  # ours
        self.next_local += 2
        self.live[stream.id] = stream
        self.local_active.add(stream.id)
        return stream

    def check_remote_id(self, sid: int) -> None:
        """Raise ``ProtocolError`` unless ``sid`` may open a stream of theirs now; then
        it is the highest id they used (whether or not the stream is accepted)."""
        if self.is_local_id(sid):
            raise ProtocolError(f"OPEN of stream {sid}: wrong parity for the peer", stream_id=sid)
        if sid <= self.highest_remote:
            raise ProtocolError(
                f"OPEN of stream {sid} after stream {self.highest_remote}: ids must increase",
                stream_id=sid,
            )
        self.highest_remote = sid

    def open_remote(self, sid: int) -> Stream:
        """Accept the peer's stream ``sid`` (checked by `check_remote_id`)."""
        stream = Stream(sid, False)  # theirs
        self.live[sid] = stream
        self.remote_active.add(sid)
        if not self._auto_release:
            self._unreleased.add(sid)
        return stream

    def finish(self, stream: Stream) -> None:
        """``stream`` leaves the live table (reset, or closed with our END sent)."""
        del self.live[stream.id]
        self.remember_closed(stream.id)
        if stream.unacked:
            self.lingering[stream.id] = stream  # closed: its messages (and slot) still count
        else:
            self.free_slot_if_done(stream)

    def consumed_all(self, stream: Stream) -> None:
        """Everything delivered on ``stream`` has been consumed."""
        self.lingering.pop(stream.id, None)
        self.free_slot_if_done(stream)

    def release(self, sid: int) -> None:
        """The application is done with the peer's stream ``sid``
        (``auto_release=False``)."""
        self._unreleased.discard(sid)
        stream = self.find(sid)
        if stream is None:
            self.remote_active.discard(sid)
        else:
            self.free_slot_if_done(stream)

    def free_slot_if_done(self, stream: Stream) -> None:
        """Give back a stream's slot once the peer is done with it on the wire and the
        application has consumed everything that arrived on it."""
        if stream.unacked:
            return
        if stream.local:
            if stream.peer_done:
                self.local_active.discard(stream.id)
        elif stream.id not in self.live and stream.id not in self._unreleased:
            self.remote_active.discard(stream.id)  # finished: reset, or both ENDs sent

    def remember_closed(self, sid: int) -> None:
        """Keep ``sid`` among the recently closed (a bounded memory)."""
        self._recent.append(sid)
        self._recent_set.add(sid)
        while len(self._recent) > self._remember:
            self._recent_set.discard(self._recent.popleft())
