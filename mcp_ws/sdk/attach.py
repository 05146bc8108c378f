"""Re-attach to a streamed call by its handle: ``mcp_ws.attach(session, handle, after)``.

::

    async with mcp_ws.attach(session, handle, after=last_seq) as stream:
        async for event in stream:      # Started, the deltas after ``after``, then
            ...                         # exactly one Completed or Failed

The server answers ``io.github.mcp-ws/attach`` with the call's kept events after the
cursor as partial results of that request, the live ones as they come, then the call's
outcome as its answer (docs/streaming.md, "Re-attach"). So an attached stream is a
`ToolStream` in every way: over mcp-ws its deltas come on the attach request's own
stream with its own credit (a slow reader slows only itself); over streamable HTTP and
stdio they come through the session's partial-result binding.

Leaving the block early detaches the reader; the call goes on. `AttachedStream.cancel`
cancels the call itself (``io.github.mcp-ws/cancel``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, EmptyResult

from .retained import AttachParams, AttachRequest, CancelParams, CancelRequest
from .stream_tool import ToolStream

__all__ = ["AttachedStream", "attach"]


class AttachedStream(ToolStream):
    """A `ToolStream` reading a call started elsewhere; get one from `attach`."""

    def __init__(
        self, session: Any, handle: str, *, after: int | None, read_timeout: float | None
    ) -> None:
        super().__init__(session, "", None, read_timeout=read_timeout, meta=None)
        self.name = f"attached call {handle[:8]}…" if isinstance(handle, str) else "attached call"
        self.handle = handle
        self.after = after

    async def _request(self) -> CallToolResult:  # no fallback: it is the attach
        params = {"handle": self.handle, "after": self.after, "_meta": self._meta}
        request = AttachRequest(params=AttachParams.model_validate(params))
        result: CallToolResult = await self._session.send_request(
            request, CallToolResult, request_read_timeout_seconds=self._read_timeout
        )
        return result

    def cancel(self) -> None:
        """Cancel the call itself on the server (not just this reader), and keep the
        block open: the iteration ends with the call's outcome, ``Failed`` with code
        -32003 once the cancel took effect."""
        if self._group is None:
            raise RuntimeError("cancel() is for a stream inside its 'async with' block")
        self._group.start_soon(self._send_cancel)

    async def _send_cancel(self) -> None:
        request = CancelRequest(params=CancelParams(handle=self.handle))
        # the attach's own answer says how the call ended
        with contextlib.suppress(MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._session.send_request(request, EmptyResult)


def attach(
    target: Any,
    handle: str,
    after: int | None = None,
    *,
    read_timeout: float | None = None,
) -> AttachedStream:
    """Read the streamed call ``handle`` (`Started.handle`) again: its kept deltas with
    seq > ``after`` (from the first kept one when ``None``), then the live ones, then
    its outcome, as `stream_tool` yields them.

    ``target`` is a ``ClientSession`` or an ``mcp.Client`` of the principal that started
    the call. Every error arrives as ``Failed`` with an ``MCPError``: -32005 unknown
    handle (also another principal's, past its retention, or malformed), -32006 events
    gone (``error.data["earliestSeq"]``), -32602 a negative ``after``.
    """
    session = getattr(target, "session", target)
    if not callable(getattr(session, "send_request", None)):
        raise TypeError(f"expected a ClientSession or an mcp.Client, got {type(target).__name__}")
    return AttachedStream(session, handle, after=after, read_timeout=read_timeout)
