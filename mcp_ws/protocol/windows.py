"""Byte-credit accounting for both directions of one connection.

Outbound (what we may send): one window per stream plus the connection window; a frame
may carry at most ``available_credit(sid)`` bytes.

Inbound (what the peer may send), the rule of ``docs/protocol.md`` section 6:

- a stream's window is refilled as the application **consumes** that stream's messages
  (``acknowledge_received``), so a paused reader holds at most one window per stream;
- the connection window is refilled as bytes for streams other than 0 are **received**
  (``data_received`` returns the grant): those bytes are already bounded by their
  stream's window, so no set of paused streams can starve the others;
- stream 0 has no window of its own: its bytes refill the connection window when they
  are consumed, which bounds what an unread session stream holds.

Grants are batched: one goes out once a quarter of its window is due.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .constants import MAX_WINDOW
from .errors import FlowControlError

__all__ = ["FlowControl", "InboundWindow", "Windows"]


class InboundWindow(Protocol):
    """What the peer may send: a connection's, or a stream's (`Windows`)."""

    recv_window: int  # the window the receiver advertises
    recv_left: int  # bytes the peer may still send
    recv_due: int  # consumed, not yet granted back


class Windows(InboundWindow, Protocol):
    """A stream's windows in both directions: the stream object itself carries them
    (``streams.Stream``), so they live and end with it."""

    send_credit: int  # bytes we may still send on it (the peer's window)


class _ConnectionWindow:
    __slots__ = ("recv_due", "recv_left", "recv_window")

    def __init__(self, size: int) -> None:
        self.recv_window = size
        self.recv_left = size
        self.recv_due = 0


class FlowControl:
    """Credit windows of one connection (see the module docstring).

    ``streams``: the connection's live streams by id (its stream table's), each carrying
    its own windows; a stream that is not there has none (it is finished, or unknown)."""

    def __init__(
        self,
        streams: Mapping[int, Windows],
        *,
        local_initial_window: int,
        local_connection_window: int,
        peer_initial_window: int,
        peer_connection_window: int,
    ) -> None:
        self._streams = streams
        self._local_initial = local_initial_window
        self._peer_initial = peer_initial_window
        self._peer_connection = peer_connection_window
        self._send_conn = peer_connection_window
        self._recv_conn = _ConnectionWindow(local_connection_window)

    # -- streams ---------------------------------------------------------------

    def add_stream(self, stream: Windows) -> None:
        """Give a new stream its initial windows in both directions."""
        stream.send_credit = self._peer_initial
        stream.recv_window = stream.recv_left = self._local_initial
        stream.recv_due = 0

    def peer_settings_changed(self, initial_window: int, connection_window: int) -> None:
        """Apply the peer's HELLO: windows move by the difference from what we assumed."""
        delta = initial_window - self._peer_initial
        self._peer_initial = initial_window
        for sid, stream in self._streams.items():
            if sid:
                stream.send_credit += delta
        self._send_conn += connection_window - self._peer_connection
        self._peer_connection = connection_window

    # -- outbound ---------------------------------------------------------------

    def available_credit(self, stream_id: int) -> int:
        """Bytes we may send on ``stream_id`` now: min(stream credit, connection credit)."""
        credit = self._send_conn
        if stream_id:
            stream = self._streams.get(stream_id)
            window = stream.send_credit if stream is not None else 0
            if window < credit:  # noqa: PLR1730 (asked per message: no min()/max() calls)
                credit = window
        return credit if credit > 0 else 0

    @property
    def connection_credit(self) -> int:
        """Bytes the connection window still allows us to send."""
        return self._send_conn

    def consume_send(self, stream_id: int, size: int) -> None:
        """Spend credit for a payload we are sending."""
        if size > self.available_credit(stream_id):
            raise AssertionError("sending beyond credit")  # the scheduler never does
        self._send_conn -= size
        if stream_id:
            self._streams[stream_id].send_credit -= size

    def credit_received(self, stream_id: int, increment: int) -> bool:
        """Apply the peer's CREDIT; ``False`` when the stream is unknown (ignore it).

        Raises ``FlowControlError`` when a window would exceed 2**31 - 1.
        """
        if stream_id == 0:
            if self._send_conn + increment > MAX_WINDOW:
                raise FlowControlError("connection window above 2**31-1")
            self._send_conn += increment
            return True
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        if stream.send_credit + increment > MAX_WINDOW:
            raise FlowControlError(f"stream {stream_id} window above 2**31-1", stream_id=stream_id)
        stream.send_credit += increment
        return True

    # -- inbound ----------------------------------------------------------------

    def data_received(self, stream_id: int, size: int) -> list[tuple[int, int]]:
        """Charge a received payload to the windows; ``FlowControlError`` on excess.

        Returns the connection grant due now (bytes of streams other than 0 refill the
        connection window on receipt; see the module docstring).
        """
        self._charge_connection(size)
        if not stream_id:
            return []
        stream = self._streams.get(stream_id)
        if stream is not None:
            if size > stream.recv_left:
                raise FlowControlError(
                    f"{size} bytes on stream {stream_id} with {stream.recv_left} of credit",
                    stream_id=stream_id,
                )
            stream.recv_left -= size
        return self._refill(0, self._recv_conn, size)

    def dropped_received(self, size: int) -> list[tuple[int, int]]:
        """Charge a payload nobody will consume (a stream that is gone, a refused OPEN):
        the connection window only, refilled at once. Returns the grant due now."""
        self._charge_connection(size)
        return self._refill(0, self._recv_conn, size)

    def acknowledge_received(self, stream_id: int, size: int) -> list[tuple[int, int]]:
        """The application consumed ``size`` bytes of ``stream_id``: grants due now.

        Returns ``(stream_id, increment)`` pairs for the CREDIT frames to send (stream 0
        is the connection). For a stream other than 0 this refills its own window only
        (the connection was refilled on receipt); for a stream that is gone, nothing.
        """
        if size <= 0:
            return []
        if not stream_id:
            return self._refill(0, self._recv_conn, size)
        stream = self._streams.get(stream_id)
        return self._refill(stream_id, stream, size) if stream is not None else []

    def _charge_connection(self, size: int) -> None:
        if size > self._recv_conn.recv_left:
            raise FlowControlError(
                f"{size} bytes received with {self._recv_conn.recv_left} of connection credit"
            )
        self._recv_conn.recv_left -= size

    @staticmethod
    def _refill(stream_id: int, window: InboundWindow, size: int) -> list[tuple[int, int]]:
        """Make ``size`` bytes due back on ``window``; the grant once a quarter is due."""
        if size <= 0:
            return []
        window.recv_due += size
        if window.recv_due < window.recv_window // 4:
            return []
        increment, window.recv_due = window.recv_due, 0
        window.recv_left += increment
        return [(stream_id, increment)]

    def receive_credit(self, stream_id: int) -> int:
        """Bytes the peer may still send on ``stream_id`` (0: on the connection)."""
        if stream_id == 0:
            return self._recv_conn.recv_left
        stream = self._streams.get(stream_id)
        return min(stream.recv_left, self._recv_conn.recv_left) if stream else 0
