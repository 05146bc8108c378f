"""Outgoing data: a queue per stream, drained round-robin within credit.

Each turn gives every stream that has data and credit one frame, so a bulk stream
cannot starve small ones. A stream blocked on its own credit leaves the rotation until
CREDIT arrives; when the connection window is exhausted the whole pass stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .constants import Flag

__all__ = ["OutgoingFrame", "Scheduler"]

# Globals for the flags set per frame: quicker than the enum class's attributes.
_MORE, _END, _NONE = Flag.MORE, Flag.END, Flag.NONE

#: (stream_id, flags, payload) of one DATA frame ready for the wire.
OutgoingFrame = tuple[int, Flag, memoryview]


class _Chunk:
    __slots__ = ("data", "end", "offset")

    def __init__(self, data: memoryview, end: bool) -> None:
        self.data = data
        self.offset = 0
        self.end = end


class Scheduler:
    """Per-stream FIFO queues of encoded messages and a round-robin rotation."""

    def __init__(self) -> None:
        self._queues: dict[int, deque[_Chunk]] = {}
        self._buffered: dict[int, int] = {}
        self._total = 0  # the sum of _buffered: asked for on every send
        self._ready: deque[int] = deque()
        self._in_ready: set[int] = set()

    def push(self, stream_id: int, data: bytes | memoryview, *, end: bool) -> None:
        """Queue one encoded message (or a bare END when ``data`` is empty)."""
        view = memoryview(data)
        self._queues.setdefault(stream_id, deque()).append(_Chunk(view, end))
        self._buffered[stream_id] = self._buffered.get(stream_id, 0) + len(view)
        self._total += len(view)
        self.wake(stream_id)

    def wake(self, stream_id: int) -> None:
        """Put a stream with queued data back into the rotation (e.g. after CREDIT)."""
        if stream_id in self._queues and stream_id not in self._in_ready:
            self._ready.append(stream_id)
            self._in_ready.add(stream_id)

    def wake_all(self) -> None:
        """Put every stream with queued data back into the rotation."""
        for sid in self._queues:
            self.wake(sid)

    def drop(self, stream_id: int) -> int:
        """Discard everything queued on a stream (it was cancelled); returns the bytes."""
        self._queues.pop(stream_id, None)
        self._in_ready.discard(stream_id)
        dropped = self._buffered.pop(stream_id, 0)
        self._total -= dropped
        return dropped

    def buffered(self, stream_id: int | None = None) -> int:
        """Bytes queued and not yet framed, for one stream or for all."""
        if stream_id is None:
            return self._total
        return self._buffered.get(stream_id, 0)

    def has_queued(self, stream_id: int) -> bool:
        """Whether a stream still has something queued (data or a bare END)."""
        return stream_id in self._queues

    def has_pending(self) -> bool:
        """Whether any stream has queued data (sendable or not)."""
        return bool(self._queues)

    def pop_frames(
        self, credit: Callable[[int], int], spend: Callable[[int, int], None], max_frame: int
    ) -> list[OutgoingFrame]:
        """Every frame sendable now, one per stream per turn, charging ``spend``."""
        frames: list[OutgoingFrame] = []
        ready = self._ready
        while ready:
            sid = ready.popleft()
            queue = self._queues.get(sid)
            if queue is None:
                self._in_ready.discard(sid)
                continue
            chunk = queue[0]
            remaining = len(chunk.data) - chunk.offset
            size = min(remaining, max_frame, credit(sid))
            if size == 0 and remaining:
                # Blocked. If it is the connection window, nobody can send: stop.
                self._in_ready.discard(sid)
                if credit(0) == 0:
                    ready.appendleft(sid)
                    self._in_ready.add(sid)
                    break
                continue
            payload = chunk.data[chunk.offset : chunk.offset + size]
            chunk.offset += size
            spend(sid, size)
            self._buffered[sid] -= size
            self._total -= size
            if chunk.offset < len(chunk.data):
                flags = _MORE
            else:
                flags = _END if chunk.end else _NONE
                queue.popleft()
            frames.append((sid, flags, payload))
            if queue:
                ready.append(sid)
            else:
                del self._queues[sid]
                del self._buffered[sid]
                self._in_ready.discard(sid)
        return frames
