"""Message assembly: fragments (DATA with MORE) back into whole messages, with early credit.

A message larger than a stream window could never finish if its bytes were credited
back only when the application consumes the whole message. So fragments of an
incomplete message are credited back as they arrive, within a connection-wide budget
(``reassembly_budget``): the *early* credit. The assembler keeps the two counts that
bound this memory: bytes held in incomplete messages, and bytes credited back early
that the application has not consumed yet (docs/protocol.md section 6).

The fragments live on their `Stream` (``partial``, ``partial_early``,
``partial_withheld``); the assembler owns the connection-wide counts and the limits.
"""

from __future__ import annotations

from .streams import Stream

__all__ = ["MessageAssembler"]


class MessageAssembler:
    """Reassembles fragmented messages within ``max_message_size`` and ``budget``."""

    __slots__ = ("budget", "buffered", "early", "max_message_size")

    def __init__(self, *, max_message_size: int, budget: int) -> None:
        self.max_message_size = max_message_size
        self.budget = budget
        self.buffered = 0
        """Bytes held in incomplete messages (all streams)."""
        self.early = 0
        """Bytes credited back before the application consumed them (all streams)."""

    def add(self, stream: Stream, fragment: bytes) -> str | None:
        """Append ``fragment`` to ``stream``'s message; returns why that is too much
        (the message or the budget is exceeded), else ``None``."""
        if stream.partial is None:
            stream.partial = bytearray()
        stream.partial += fragment
        self.buffered += len(fragment)
        if len(stream.partial) > self.max_message_size:
            return "message above max_message_size"
        if self.buffered > self.budget:
            return "reassembly budget exhausted"
        return None

    def credit_early(self, stream: Stream, size: int) -> bool:
        """Whether the ``size`` bytes just added to an incomplete message may be
        credited back now (within the budget); they are counted either way."""
        if self.early + size <= self.budget:
            stream.partial_early += size
            self.early += size
            return True
        stream.partial_withheld += size
        return False

    def complete(self, stream: Stream) -> tuple[bytes, int]:
        """The whole message of ``stream``, and how many of its bytes went back early."""
        assert stream.partial is not None
        body = bytes(stream.partial)
        early = stream.partial_early
        self.buffered -= len(body)
        stream.partial = None
        stream.partial_early = stream.partial_withheld = 0
        return body, early

    def drop(self, stream: Stream) -> int:
        """Discard ``stream``'s incomplete message; returns its bytes not credited back
        yet (stream 0 owes them to the peer's connection window)."""
        if stream.partial is None:
            return 0
        withheld = stream.partial_withheld
        self.buffered -= len(stream.partial)
        self.early -= stream.partial_early
        stream.partial = None
        stream.partial_early = stream.partial_withheld = 0
        return withheld

    def settle(self, early: int) -> None:
        """``early`` bytes credited back early were consumed, dropped or never delivered."""
        self.early -= early
