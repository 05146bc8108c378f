"""Forward MCP sessions between transports: the engine of ``mcp-ws bridge`` and ``mcp-ws stdio``.

`forward_session` relays one session between a client side and a server side, each a
``(read_stream, write_stream)`` pair of the SDK's ``SessionMessage`` streams. It keeps
what a relay must keep: which requests are open, and which partial-result or progress
token belongs to which request, so that those notifications travel on the request's
own mcp-ws stream (with its flow control) rather than on stream 0.

`StdioChild` runs a stdio MCP server (any language) as a child process; `stdio_bridge`
gives each WebSocket connection its own child, so sessions never share request ids,
notifications or cancellation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from .streaming import PARTIAL_RESULT

__all__ = ["MAX_LINE", "StdioChild", "forward_session", "stdio_bridge"]

logger = logging.getLogger("mcp_ws.proxy")

MAX_LINE = 96 * 1024 * 1024
"""Longest JSON line accepted from a child (a message of the binding's 80 MiB, encoded)."""

CHILD_READ_AHEAD = 16
"""Messages read from a child's stdout ahead of the client (backpressure beyond that)."""

STOP_GRACE = 2.0
"""Seconds a child gets to exit after its stdin closes, then again after SIGTERM."""

Streams = tuple[Any, Any]


class _OpenRequests:
    """The client's requests still open, and the tokens that relate notifications to them."""

    def __init__(self) -> None:
        self.ids: set[RequestId] = set()
        self._by_token: dict[tuple[str, str | int], RequestId] = {}
        self._tokens: dict[RequestId, list[tuple[str, str | int]]] = {}

    def opened(self, request: JSONRPCRequest) -> None:
        self.ids.add(request.id)
        meta = (request.params or {}).get("_meta")
        if not isinstance(meta, Mapping):
            return
        for kind in ("partialResultToken", "progressToken"):
            token = meta.get(kind)
            if isinstance(token, str | int) and not isinstance(token, bool):
                self._by_token[(kind, token)] = request.id
                self._tokens.setdefault(request.id, []).append((kind, token))

    def closed(self, request_id: RequestId | None) -> None:
        if request_id is None:
            return
        self.ids.discard(request_id)
        for key in self._tokens.pop(request_id, ()):
            self._by_token.pop(key, None)

    def related(self, note: JSONRPCNotification) -> RequestId | None:
        """The open request a partial result or a progress notification is about."""
        params = note.params or {}
        if note.method == PARTIAL_RESULT:
            key = ("partialResultToken", params.get("partialResultToken"))
        elif note.method == "notifications/progress":
            key = ("progressToken", params.get("progressToken"))
        else:
            return None
        token = key[1]
        if not isinstance(token, str | int) or isinstance(token, bool):
            return None
        return self._by_token.get((key[0], token))


async def forward_session(
    client: Streams,
    server: Streams,
    *,
    server_gone: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Relay one MCP session between ``client`` and ``server`` until either side ends.

    When the server side ends first, every request still open is answered with a
    ``CONNECTION_CLOSED`` error whose message is ``await server_gone()``, so no client call
    waits forever. ``notifications/cancelled`` is relayed like any notification (the
    bridges turn it into an mcp-ws CANCEL and back).
    """
    client_read, client_write = client
    server_read, server_write = server
    open_requests = _OpenRequests()

    async def gone() -> str:
        return await server_gone() if server_gone else "the MCP server closed the session"

    async def answer_error(request_id: RequestId, message: str) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await client_write.send(_closed_error(request_id, message))

    async def client_to_server(done: anyio.CancelScope) -> None:
        async for item in client_read:
            if isinstance(item, Exception):
                logger.warning("dropped an invalid message from the client: %s", item)
                continue
            message = item.message
            if isinstance(message, JSONRPCRequest):
                open_requests.opened(message)
            elif message.method == "notifications/cancelled" and message.params:
                open_requests.closed(message.params.get("requestId"))
            try:
                await server_write.send(SessionMessage(message=message))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                if isinstance(message, JSONRPCRequest):
                    open_requests.closed(message.id)
                    await answer_error(message.id, await gone())
                done.cancel()
                return
        done.cancel()  # the client left

    async def server_to_client(done: anyio.CancelScope) -> None:
        async for item in server_read:
            if isinstance(item, Exception):
                logger.warning("dropped an invalid message from the server: %s", item)
                continue
            message = item.message
            metadata = None
            if isinstance(message, JSONRPCResponse | JSONRPCError):
                open_requests.closed(message.id)
            elif isinstance(message, JSONRPCNotification):
                related = open_requests.related(message)
                if related is not None:
                    metadata = ServerMessageMetadata(related_request_id=related)
            try:
                await client_write.send(SessionMessage(message=message, metadata=metadata))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                done.cancel()  # the client is gone
                return
        reason = await gone()
        for request_id in list(open_requests.ids):
            open_requests.closed(request_id)
            await answer_error(request_id, reason)
        done.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client_to_server, tg.cancel_scope)
        tg.start_soon(server_to_client, tg.cancel_scope)


class _ChildWriteStream:
    """The SDK-style write stream into a child's stdin (one JSON message per line)."""

    def __init__(self, child: StdioChild) -> None:
        self._child = child
        self._lock = anyio.Lock()

    async def send(self, item: SessionMessage, /) -> None:
        """Write one message; raises ``anyio.BrokenResourceError`` once the child is gone."""
        line = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
        stdin = self._child.process.stdin
        assert stdin is not None
        async with self._lock:
            try:
                await stdin.send(line)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise anyio.BrokenResourceError(f"{self._child.name} is gone") from exc

    async def aclose(self) -> None:
        """Close the child's stdin: a stdio MCP server exits when it sees EOF."""
        stdin = self._child.process.stdin
        if stdin is not None:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(OSError, anyio.BrokenResourceError):
                    await stdin.aclose()


class StdioChild:
    """A stdio MCP server run as a child process: ``async with StdioChild(argv) as child``.

    ``child.read_stream`` / ``child.write_stream`` are SDK-style message streams;
    stderr goes to the ``mcp_ws.proxy`` log line by line. Leaving the block closes the
    child's stdin, then sends SIGTERM and SIGKILL to a child that does not exit.
    Raises ``OSError`` (e.g. ``FileNotFoundError``) if it cannot be started.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if not command:
            raise ValueError("the command is empty")
        self.command = list(command)
        self.name = os.path.basename(self.command[0])
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self.process: anyio.abc.Process
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (negative: killed by that signal)."""
        return self.process.returncode

    async def exit_reason(self, wait: float = 1.0) -> str:
        """How the child ended, waiting up to ``wait`` seconds for it to exit."""
        with anyio.move_on_after(wait):
            await self.process.wait()
        return self.describe_exit()

    def describe_exit(self) -> str:
        """A sentence for clients: how the child ended."""
        code = self.process.returncode
        if code is None:
            return f"the MCP server {self.name!r} closed its output"
        if code < 0:
            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
            return f"the MCP server {self.name!r} was killed by {how}"
        return f"the MCP server {self.name!r} exited with code {code}"

    async def __aenter__(self) -> Self:
        self.process = await anyio.open_process(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            cwd=self._cwd,
        )
        # A small buffer: when the client reads slowly, the child's stdout pipe fills and
        # the child blocks, instead of its output piling up here.
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](
            CHILD_READ_AHEAD
        )
        self.read_stream: MemoryObjectReceiveStream[SessionMessage | Exception] = receive
        self.write_stream = _ChildWriteStream(self)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._read_stdout, send)
        self._group.start_soon(self._log_stderr)
        logger.info("started %s (pid %d)", self.command, self.process.pid)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        assert self._group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.stop()
            self._group.cancel_scope.cancel()
            return await self._group.__aexit__(exc_type, exc_val, exc_tb)
        finally:
            with anyio.CancelScope(shield=True):
                await self.read_stream.aclose()
                await self.process.aclose()
            logger.info("%s (pid %d): %s", self.name, self.process.pid, self.describe_exit())

    async def stop(self) -> None:
        """Ask the child to exit (EOF on stdin), then insist (SIGTERM, then SIGKILL)."""
        await self.write_stream.aclose()
        for insist in (self.process.terminate, self.process.kill):
            with anyio.move_on_after(STOP_GRACE):
                await self.process.wait()
                return
            if self.process.returncode is None:
                try:
                    insist()
                except ProcessLookupError:
                    return
        await self.process.wait()

    async def _read_stdout(self, send: Any) -> None:
        assert self.process.stdout is not None
        lines = BufferedByteReceiveStream(self.process.stdout)
        async with send:
            while True:
                try:
                    line = await lines.receive_until(b"\n", MAX_LINE)
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                except anyio.DelimiterNotFound:
                    logger.error("%s wrote a line over %d bytes; stopping", self.name, MAX_LINE)  # noqa: TRY400
                    return
                if not line.strip():
                    continue
                try:
                    message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValidationError as exc:
                    await send.send(ValueError(f"{self.name} wrote an invalid message: {exc}"))
                    continue
                await send.send(SessionMessage(message=message))

    async def _log_stderr(self) -> None:
        assert self.process.stderr is not None
        lines = BufferedByteReceiveStream(self.process.stderr)
        while True:
            try:
                line = await lines.receive_until(b"\n", 64 * 1024)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            except anyio.DelimiterNotFound:
                continue  # an endless line: skip what was buffered
            logger.info("%s: %s", self.name, line.decode(errors="replace").rstrip())


def stdio_bridge(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Callable[[Any, Any], Awaitable[None]]:
    """A session runner for `McpWsServer`: each session gets its own child ``command``.

    A child that cannot start answers the session's first request with an error; a
    child that exits or crashes answers every open request with ``CONNECTION_CLOSED``
    and a message saying how it ended, then the session closes.
    """
    argv = list(command)
    if not argv:
        raise ValueError("the command is empty")

    async def run(read: Any, write: Any) -> None:
        try:
            child = StdioChild(argv, env=env, cwd=cwd)
            async with child:
                await forward_session(
                    (read, write),
                    (child.read_stream, child.write_stream),
                    server_gone=child.exit_reason,
                )
        except OSError as exc:
            logger.error("cannot start %s: %s", argv, exc)  # noqa: TRY400 (no traceback)
            await _refuse_first_request(read, write, f"cannot start the MCP server: {exc}")

    return run


async def _refuse_first_request(read: Any, write: Any, reason: str) -> None:
    async for item in read:
        if isinstance(item, SessionMessage) and isinstance(item.message, JSONRPCRequest):
            await write.send(_closed_error(item.message.id, reason))
            return


def _closed_error(request_id: RequestId, message: str) -> SessionMessage:
    """The ``CONNECTION_CLOSED`` answer to a request the server side cannot answer."""
    error = ErrorData(code=CONNECTION_CLOSED, message=message)
    return SessionMessage(message=JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
