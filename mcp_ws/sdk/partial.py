"""The server side of the streaming extension: ``mcp_ws.partial_results(ctx)``.

Works in any ``MCPServer`` tool or low-level ``tools/call`` handler, on any transport:

- the client opted in, over mcp-ws: each delta goes straight into the call's stream and
  ``send`` waits for that stream's credit only, so a slow reader slows the producer;
- the client opted in, over stdio or streamable HTTP: the same deltas go out as
  ``notifications/tools/partial_result`` JSON notifications;
- the client did not opt in: nothing is sent per delta; if it asked for progress, a
  rate-limited progress notification carries the recent text.

Either way, return ``out.result()`` (or ``out.text``): the final result holds the
aggregate, so a client that ignored every delta loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, cast

import anyio
import anyio.lowlevel
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel

from ..protocol.errors import CallClosedError
from .bridge import SessionBridge
from .emit import PartialEmitter
from .retained import Production, current_production, retained_calls
from .streaming import EXTENSION_ID, PARTIAL_RESULT, Aggregate, binary_block

__all__ = ["PartialResults", "advertise_streaming", "partial_results"]

RECENT_TEXT_LIMIT = 200
"""Characters of recent text a fallback progress message carries at most."""


def advertise_streaming(app: object) -> None:
    """Advertise the extension in ``app``'s capabilities, on every transport.

    Adds ``io.github.mcp-ws/streaming`` to ``extensions`` and to ``experimental`` (the
    SDK strips ``extensions`` from 2025-era handshakes), and the re-attach methods
    (`mcp_ws.sdk.retained`: streamed calls get handles kept in an embedded store).
    `mcp_ws.serve` does this for you; call it yourself before ``app.run("stdio")`` or a
    streamable HTTP app, once its tools are registered. Idempotent.
    """
    server = app._lowlevel_server if isinstance(app, MCPServer) else app
    if not isinstance(server, Server):
        raise TypeError(f"expected a Server or an MCPServer, got {type(app).__name__}")
    retained_calls(server)
    server.extensions.setdefault(EXTENSION_ID, {})
    original = server.create_initialization_options
    if getattr(original, "_mcp_ws_streaming", False):
        return

    def with_streaming(
        notification_options: Any = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> Any:
        experimental = dict(experimental_capabilities or {})
        experimental.setdefault(EXTENSION_ID, {})
        return original(notification_options, experimental, extensions)

    with_streaming._mcp_ws_streaming = True  # type: ignore[attr-defined]
    server.create_initialization_options = with_streaming  # type: ignore[method-assign]


class PartialResults:
    """Partial output of one tool call; use it as ``async with partial_results(ctx) as out``.

    ``send_*`` calls are backpressured on mcp-ws and raise promptly once the call is
    cancelled (`CallClosedError`, or the handler's cancellation). ``text``,
    ``content`` and ``structured`` are the aggregate; `result` builds the final result.
    """

    def __init__(
        self, ctx: Any, *, progress_interval: float = 0.25, meta: Mapping[str, Any] | None = None
    ) -> None:
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping, got {type(meta).__name__}")
        self._start_meta = dict(meta) if meta is not None else None
        request = getattr(ctx, "request_context", ctx)  # MCPServer Context or low-level
        params = getattr(request, "params", None)
        raw = params.get("_meta") if isinstance(params, Mapping) else None
        meta = cast(Mapping[str, Any], raw if isinstance(raw, Mapping) else request.meta or {})
        token = meta.get("partialResultToken")
        valid = isinstance(token, str | int) and not isinstance(token, bool)
        self.token: str | int | None = token if valid else None
        self._progress_token = meta.get("progressToken", meta.get("progress_token"))
        self._session = request.session
        self._request_id = request.request_id
        self._emitter = PartialEmitter(ctx, self.token) if self.token is not None else None
        self._bridge: SessionBridge | None = self._emitter.bridge if self._emitter else None
        self._production: Production | None = current_production() if self._emitter else None
        self.handle: str | None = None
        """The call's handle, once entered (clients re-attach with it); ``None`` when
        the client did not opt in, or the app keeps no calls."""
        self._aggregate = Aggregate()
        self._seq = 0
        self._open = False
        self._done = False
        self._progress_interval = progress_interval
        self._progress_sent_at = -math.inf
        self._progress_count = 0
        self._recent: list[str] = []

    @property
    def streaming(self) -> bool:
        """Whether the client opted in (partial results are sent as they come)."""
        return self.token is not None

    @property
    def text(self) -> str:
        """All text sent so far, concatenated."""
        return self._aggregate.text

    @property
    def content(self) -> list[dict[str, Any]]:
        """The aggregate content blocks (as JSON-ready dicts)."""
        return self._aggregate.content

    @property
    def structured(self) -> Any:
        """The aggregate of `send_structured` calls."""
        return self._aggregate.structured

    def result(self, *, is_error: bool = False) -> CallToolResult:
        """The final ``CallToolResult``: the aggregate, marked with the last ``seq``."""
        data: dict[str, Any] = {"content": self._aggregate.content, "isError": is_error}
        if self._aggregate.structured is not None:
            data["structuredContent"] = self._aggregate.structured
        if self.streaming:
            data["_meta"] = {EXTENSION_ID: {"lastSeq": self._seq - 1}}
        return CallToolResult.model_validate(data, by_alias=True)

    async def __aenter__(self) -> Self:
        if self._open or self._done:
            raise RuntimeError("partial results can be entered once")
        self._open = True
        if self.streaming:
            start: dict[str, Any] = {"event": "start"}
            if self._start_meta is not None:
                start["meta"] = self._start_meta
            if self._production is not None:
                self.handle = await self._production.open(dict(start))
                start["handle"] = self.handle
            await self._emit(start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._open = False
        self._done = True
        if exc_type is None and self._recent and self._progress_token is not None:
            await self._report_progress()

    async def send_text(self, text: str, *, index: int | None = None) -> None:
        """Append ``text`` to the last text block (or to block ``index``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        block: dict[str, Any] = {"type": "text", "text": text}
        if index is not None:
            block["index"] = index
        await self._send_blocks([block], text)

    async def send_content(self, block: Any) -> None:
        """Append one MCP content block (an ``mcp_types`` model or a dict)."""
        if isinstance(block, BaseModel):
            block = block.model_dump(by_alias=True, mode="json", exclude_none=True)
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise TypeError("a content block is a mapping with a 'type'")
        await self._send_blocks([dict(block)], str(block.get("text", "")))

    async def send_bytes(self, data: bytes, mime_type: str, *, uri: str = "") -> None:
        """Append binary content: raw MessagePack ``bin`` on mcp-ws, base64 elsewhere."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        raw = self._bridge is not None
        await self._send_blocks([binary_block(bytes(data), mime_type, raw=raw, uri=uri)], "")

    async def send_structured(self, value: Any) -> None:
        """Merge ``value`` into the structured result (objects key by key)."""
        self._check_open()
        self._aggregate.add_structured(value)
        if self.streaming:
            await self._emit({"event": "delta", "structuredContent": value})

    async def _send_blocks(self, blocks: list[dict[str, Any]], text: str) -> None:
        self._check_open()
        self._aggregate.add(blocks)  # raises for a bad index before anything is sent
        if self.streaming:
            await self._emit({"event": "delta", "content": blocks})
        elif self._progress_token is not None:
            if text:
                self._recent.append(text)
            if anyio.current_time() - self._progress_sent_at >= self._progress_interval:
                await self._report_progress()
        else:
            await anyio.lowlevel.checkpoint()  # stays cancellable like the streaming path

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("use partial results inside 'async with partial_results(ctx)'")

    async def _emit(self, fields: dict[str, Any]) -> None:
        # The hot path of a streamed call: one event kept (if the app keeps calls), then
        # sent to the caller on its own stream (or as a notification off mcp-ws).
        seq = self._seq
        self._seq = seq + 1
        production = self._production
        if production is not None:
            handle = production.handle
            store = production.retained.store
            if seq and handle is not None and store.append_nowait(handle, fields) is None:
                await store.append(handle, fields)  # waits at the budget
            if not production.origin:
                # kept for readers that come back; its caller is gone (a checkpoint: the
                # producer stays cancellable and fair while nothing else makes it wait)
                await anyio.lowlevel.checkpoint()
                return
        bridge = self._bridge
        try:
            if bridge is not None:
                params = {"partialResultToken": self.token, "seq": seq, **fields}
                message = {"jsonrpc": "2.0", "method": PARTIAL_RESULT, "params": params}
                # the start and the first delta go out at once; later ones may coalesce
                await bridge.send_related(
                    self._request_id, message, urgent=seq <= 1, wait_for_cancel=not production
                )
            else:
                assert self._emitter is not None
                await self._emitter.emit(seq, fields)
        except (CallClosedError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            if production is None:
                raise
            await production.lose_origin()  # the session ended: runs on for readers

    async def _report_progress(self) -> None:
        self._progress_count += 1
        recent = "".join(self._recent)[-RECENT_TEXT_LIMIT:]
        self._recent.clear()
        self._progress_sent_at = anyio.current_time()
        await self._session.report_progress(self._progress_count, None, recent or None)


def partial_results(
    ctx: Any, *, progress_interval: float = 0.25, meta: Mapping[str, Any] | None = None
) -> PartialResults:
    """Stream a tool's output as it is produced: ``async with partial_results(ctx) as out``.

    ``ctx`` is the tool's ``Context`` (``MCPServer``) or the low-level handler's request
    context. ``progress_interval`` is the minimum time between fallback progress
    notifications for clients that did not opt in. ``meta`` is attached to the start
    event (the client sees it as ``Started.meta``), e.g. a model name or a content type.
    """
    return PartialResults(ctx, progress_interval=progress_interval, meta=meta)
