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

from .constants import MAX_WINDOW
from .errors import FlowControlError

__all__ = ["FlowControl"]


class _Inbound:
    __slots__ = ("pending", "remaining", "size")

    def __init__(self, size: int) -> None:
        self.size = size  # the window the receiver advertises
        self.remaining = size  # bytes the peer may still send
        self.pending = 0  # consumed, not yet granted back


class FlowControl:
    """Credit windows of one connection (see the module docstring)."""

    def __init__(
        self,
        *,
        local_initial_window: int,
        local_connection_window: int,
        peer_initial_window: int,
        peer_connection_window: int,
    ) -> None:
        self._local_initial = local_initial_window
        self._peer_initial = peer_initial_window
        self._peer_connection = peer_connection_window
        self._send_conn = peer_connection_window
        self._send: dict[int, int] = {}
        self._recv_conn = _Inbound(local_connection_window)
        self._recv: dict[int, _Inbound] = {}

    # -- streams ---------------------------------------------------------------

    def add_stream(self, stream_id: int) -> None:
        """Give a new stream its initial windows in both directions."""
        self._send[stream_id] = self._peer_initial
        self._recv[stream_id] = _Inbound(self._local_initial)

    def remove_stream(self, stream_id: int) -> None:
        """Forget a finished stream's windows (the connection windows are unaffected)."""
        self._send.pop(stream_id, None)
        self._recv.pop(stream_id, None)

    def peer_settings_changed(self, initial_window: int, connection_window: int) -> None:
        """Apply the peer's HELLO: windows move by the difference from what we assumed."""
        delta = initial_window - self._peer_initial
        self._peer_initial = initial_window
        for sid in self._send:
            self._send[sid] += delta
        self._send_conn += connection_window - self._peer_connection
        self._peer_connection = connection_window

    # -- outbound ---------------------------------------------------------------

    def available_credit(self, stream_id: int) -> int:
        """Bytes we may send on ``stream_id`` now: min(stream credit, connection credit)."""
        credit = self._send_conn
        if stream_id:
            window = self._send.get(stream_id, 0)
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
            self._send[stream_id] -= size

    def credit_received(self, stream_id: int, increment: int) -> bool:
        """Apply the peer's CREDIT; ``False`` when the stream is unknown (ignore it).

        Raises ``FlowControlError`` when a window would exceed 2**31 - 1.
        """
        if stream_id == 0:
            if self._send_conn + increment > MAX_WINDOW:
                raise FlowControlError("connection window above 2**31-1")
            self._send_conn += increment
            return True
        if stream_id not in self._send:
            return False
        if self._send[stream_id] + increment > MAX_WINDOW:
            raise FlowControlError(f"stream {stream_id} window above 2**31-1", stream_id=stream_id)
        self._send[stream_id] += increment
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
        window = self._recv.get(stream_id)
        if window is not None:
            if size > window.remaining:
                raise FlowControlError(
                    f"{size} bytes on stream {stream_id} with {window.remaining} of credit",
                    stream_id=stream_id,
                )
            window.remaining -= size
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
        window = self._recv.get(stream_id)
        return self._refill(stream_id, window, size) if window is not None else []

    def _charge_connection(self, size: int) -> None:
        if size > self._recv_conn.remaining:
            raise FlowControlError(
                f"{size} bytes received with {self._recv_conn.remaining} of connection credit"
            )
        self._recv_conn.remaining -= size

    @staticmethod
    def _refill(stream_id: int, window: _Inbound, size: int) -> list[tuple[int, int]]:
        """Make ``size`` bytes due back on ``window``; the grant once a quarter is due."""
        if size <= 0:
            return []
        window.pending += size
        if window.pending < window.size // 4:
            return []
        increment, window.pending = window.pending, 0
        window.remaining += increment
        return [(stream_id, increment)]

    def receive_credit(self, stream_id: int) -> int:
        """Bytes the peer may still send on ``stream_id`` (0: on the connection)."""
        if stream_id == 0:
            return self._recv_conn.remaining
        window = self._recv.get(stream_id)
        return min(window.remaining, self._recv_conn.remaining) if window else 0
