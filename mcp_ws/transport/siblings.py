"""The worker processes of one ``mcp-ws serve --workers N``, for resume (docs/protocol.md
section 9).

The kernel spreads connections over the workers (``SO_REUSEPORT``), so a client's resume
may reach a worker other than the one that holds its connection. Each worker therefore
also listens on a private loopback port, published in a directory the supervisor shares
with them, and names itself in its HELLOs (``worker``); a worker that receives a
handshake whose ``mcp_ws_worker`` names a sibling hands the raw connection to that
sibling's private port (`splice`) before answering it. Only the siblings listed in the
directory are ever dialled.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc

__all__ = ["Handoff", "Siblings", "splice"]

_CHUNK = 65536
_ENDED = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass(frozen=True, slots=True)
class Handoff:
    """A handshake to pass to the sibling listening on ``port``; ``data`` is what was
    read of it so far (the request head, and anything after it)."""

    port: int
    data: bytes = b""


class Siblings:
    """Worker ``index`` of the group whose private ports are published in ``directory``."""

    def __init__(self, directory: str | Path, index: int) -> None:
        self.directory = Path(directory)
        self.index = index

    @property
    def name(self) -> str:
        """This worker's name in HELLOs and URLs."""
        return str(self.index)

    def publish(self, port: int) -> None:
        """Say that this worker listens privately on ``port`` (atomically replaced)."""
        temporary = self.directory / f".{self.index}.{os.getpid()}"
        temporary.write_text(str(port))
        temporary.replace(self.directory / str(self.index))

    def port_of(self, worker: str) -> int | None:
        """The private port of sibling ``worker``; ``None`` for this worker, a name that
        is not a sibling's, or one that has not published a port."""
        if not worker.isdigit() or len(worker) > 6 or int(worker) == self.index:
            return None
        try:
            text = (self.directory / str(int(worker))).read_text()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


async def splice(stream: anyio.abc.ByteStream, handoff: Handoff) -> None:
    """Carry ``stream`` to the sibling's port: what was read first, then both ways until
    either side ends. A sibling that is gone just closes the stream."""
    try:
        upstream = await anyio.connect_tcp("127.0.0.1", handoff.port)
    except OSError:
        await stream.aclose()
        return
    async with upstream, stream:
        await upstream.send(handoff.data)
        async with anyio.create_task_group() as tg:

            async def pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
                with contextlib.suppress(*_ENDED):
                    while True:
                        try:
                            chunk = await source.receive(_CHUNK)
                        except anyio.EndOfStream:
                            break
                        await sink.send(chunk)
                tg.cancel_scope.cancel()

            tg.start_soon(pipe, stream, upstream)
            tg.start_soon(pipe, upstream, stream)
