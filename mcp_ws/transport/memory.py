"""Two `MessageChannel`s joined back to back in memory: the mux and the SDK binding run
over them exactly as over a WebSocket, with no socket (for tests, and for embedding a
client and a server in one process).

Each direction is a bounded anyio memory stream, so a side that stops reading makes the
other's sends wait, as TCP would. ``close`` sends a close that the other side answers
(as the WebSocket closing handshake does); ``aclose`` drops the connection, which the
other side sees as close code 1006.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..protocol.constants import SUBPROTOCOL

__all__ = ["MemoryChannel", "memory_channel_pair"]

_Item = bytes | str | tuple[int, str]  # a message, or a close (code, reason)


class MemoryChannel:
    """One end of `memory_channel_pair`; implements `MessageChannel`."""

    def __init__(
        self,
        outgoing: MemoryObjectSendStream[_Item],
        incoming: MemoryObjectReceiveStream[_Item],
        subprotocol: str,
    ) -> None:
        self.subprotocol: str | None = subprotocol
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._out = outgoing
        self._in = incoming
        self._close_sent = False

    async def receive(self) -> bytes | str | None:
        """The next message; ``None`` once the peer closed (or dropped) the connection."""
        if self.close_code is not None:
            return None
        try:
            item = await self._in.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.close_code = 1006
            return None
        if isinstance(item, tuple):
            self.close_code, self.close_reason = item
            await self.close(*item)  # answer the close, as a WebSocket does
            return None
        return item

    async def send(self, messages: Sequence[bytes | str]) -> None:
        """Send messages in order; ``anyio.BrokenResourceError`` once the peer is gone."""
        if self._close_sent:
            raise anyio.BrokenResourceError("the channel is closed")
        try:
            for message in messages:
                await self._out.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise anyio.BrokenResourceError("the peer is gone") from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close (once)."""
        if self._close_sent:
            return
        self._close_sent = True
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._out.send((code, reason))

    async def aclose(self) -> None:
        """Drop the connection at once."""
        self._close_sent = True
        self._out.close()
        self._in.close()


def memory_channel_pair(
    buffer: int = 64, subprotocol: str = SUBPROTOCOL
) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels (client end, server end), each holding ``buffer`` messages
    the other has not read yet before its sends wait."""
    a_out, b_in = anyio.create_memory_object_stream[_Item](buffer)
    b_out, a_in = anyio.create_memory_object_stream[_Item](buffer)
    return MemoryChannel(a_out, a_in, subprotocol), MemoryChannel(b_out, b_in, subprotocol)
