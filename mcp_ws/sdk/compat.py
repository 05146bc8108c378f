"""Subprotocol ``mcp``: one JSON-RPC message per WebSocket text message, no mux.

This is what SDK 1.x ``websocket_client``/``websocket_server`` and supergateway speak;
both our client (fallback) and our server accept it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter
from pydantic import ValidationError

from ..transport.websocket import MessageChannel

__all__ = ["json_text_streams"]

_Streams = tuple[
    MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]
]
_READ_AHEAD = 32  # messages; beyond that the socket is not read (TCP backpressure)


@asynccontextmanager
async def json_text_streams(
    channel: MessageChannel, *, close_timeout: float = 5.0
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """Yield the SDK's ``(read_stream, write_stream)`` over a JSON-text WebSocket."""
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](
        _READ_AHEAD
    )
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](_READ_AHEAD)

    async def reader() -> None:
        async with read_send:
            while (data := await channel.receive()) is not None:
                try:
                    message = jsonrpc_message_adapter.validate_json(data, by_name=False)
                except ValidationError as exc:
                    await read_send.send(ValueError(f"invalid JSON-RPC message: {exc}"))
                    continue
                try:
                    await read_send.send(SessionMessage(message=message))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    writer_done = anyio.Event()

    async def writer() -> None:
        try:
            async with write_recv:
                async for item in write_recv:
                    text = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await channel.send([text])
        except anyio.BrokenResourceError:
            pass  # the reader sees the end too
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            async with read_recv, write_send:
                yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(close_timeout):
                await writer_done.wait()  # what the SDK wrote last still goes out
                with contextlib.suppress(anyio.BrokenResourceError):
                    await channel.close(1000)
            tg.cancel_scope.cancel()
            await channel.aclose()
