"""The streaming extension's schema, shared by the server helper and the client API.

See ``docs/streaming.md``. A client opts in per call with
``params._meta.partialResultToken``; the server answers with
``notifications/tools/partial_result`` (``seq`` 0 is ``start``, then ``delta`` events)
and the call's JSON-RPC result, which holds the aggregate of every delta.

How deltas aggregate (`Aggregate`): a text block with ``index: i`` appends to block
``i``; a text block without ``index`` appends to the last text block (or starts the
first); any other block is appended as a new block. Each ``structuredContent`` delta is
merged into the aggregate object key by key (a non-object replaces it).
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "EXTENSION_ID",
    "PARTIAL_RESULT",
    "STREAMS",
    "Aggregate",
    "binary_block",
    "new_token",
]

EXTENSION_ID = "io.github.mcp-ws/streaming"
"""The extension's identifier in capabilities and in the final result's ``_meta``."""

PARTIAL_RESULT = "notifications/tools/partial_result"
"""The JSON-RPC method of a partial result."""

STREAMS: dict[str, Any] = {EXTENSION_ID: {"streams": True}}
"""Tool ``_meta`` that says a tool streams its output: ``@app.tool(meta=mcp_ws.STREAMS)``.
The chat page lists these tools (all tools when none is marked)."""

_tokens = itertools.count(1)
_token_prefix = os.urandom(6).hex()


def new_token() -> str:
    """A ``partialResultToken`` unique in this process."""
    return f"mcpws-{_token_prefix}-{next(_tokens)}"


def binary_block(data: bytes, mime_type: str, *, raw: bool, uri: str = "") -> dict[str, Any]:
    """A content block for binary data: image, audio, or an embedded blob resource.

    ``raw`` keeps the bytes as they are (MessagePack ``bin`` on mcp-ws); otherwise they
    are base64 text, as JSON and the SDK's models expect.
    """
    payload: bytes | str = data if raw else base64.b64encode(data).decode("ascii")
    if mime_type.startswith("image/"):
        return {"type": "image", "data": payload, "mimeType": mime_type}
    if mime_type.startswith("audio/"):
        return {"type": "audio", "data": payload, "mimeType": mime_type}
    return {
        "type": "resource",
        "resource": {"uri": uri or "mcp-ws:blob", "mimeType": mime_type, "blob": payload},
    }


def as_json_safe(block: Mapping[str, Any]) -> dict[str, Any]:
    """``block`` with raw ``bytes`` payloads turned into base64 text."""
    out = dict(block)
    if isinstance(out.get("data"), bytes | bytearray | memoryview):
        out["data"] = base64.b64encode(bytes(out["data"])).decode("ascii")
    resource = out.get("resource")
    if isinstance(resource, Mapping) and isinstance(
        resource.get("blob"), bytes | bytearray | memoryview
    ):
        out["resource"] = {**resource, "blob": base64.b64encode(bytes(resource["blob"])).decode()}
    return out


def block_bytes(block: Mapping[str, Any]) -> bytes | None:
    """The binary payload of an image, audio or blob block (raw or base64), else ``None``."""
    value = block.get("data")
    if value is None and isinstance(block.get("resource"), Mapping):
        value = block["resource"].get("blob")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value)
    return None


class Aggregate:
    """The running aggregate of a stream's deltas (what the final result holds)."""

    def __init__(self) -> None:
        self._blocks: list[dict[str, Any]] = []
        self._chunks: dict[int, list[str]] = {}  # text block index -> its pieces
        self._last_text: int | None = None
        self.structured: Any = None

    def add(self, blocks: Iterable[Mapping[str, Any]]) -> None:
        """Apply one delta's content blocks.

        Raises ``ValueError`` for an ``index`` that is not a text block, ``TypeError`` for
        one that is not an integer.
        """
        for block in blocks:
            if block.get("type") == "text":
                self._add_text(str(block.get("text", "")), block.get("index"))
            else:
                self._blocks.append(as_json_safe(block))

    def _add_text(self, text: str, index: object) -> None:
        if index is None:
            if self._last_text is None:
                self._start_text(text)
            else:
                self._chunks[self._last_text].append(text)
            return
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError(f"a text block's index must be an integer, got {index!r}")
        if index == len(self._blocks):
            self._start_text(text)
        elif 0 <= index < len(self._blocks) and index in self._chunks:
            self._chunks[index].append(text)
            self._last_text = index
        else:
            raise ValueError(f"index {index} is not a text block of the aggregate")

    def _start_text(self, text: str) -> None:
        self._last_text = len(self._blocks)
        self._blocks.append({"type": "text", "text": ""})
        self._chunks[self._last_text] = [text]

    def add_structured(self, value: Any) -> None:
        """Merge a ``structuredContent`` delta (objects key by key, anything else replaces)."""
        if isinstance(value, Mapping) and isinstance(self.structured, dict):
            self.structured.update(value)
        else:
            self.structured = dict(value) if isinstance(value, Mapping) else value

    @property
    def content(self) -> list[dict[str, Any]]:
        """The aggregate content blocks (JSON-safe: binary as base64)."""
        out = []
        for i, block in enumerate(self._blocks):
            if i in self._chunks:
                joined = "".join(self._chunks[i])
                self._chunks[i] = [joined]
                out.append({"type": "text", "text": joined})
            else:
                out.append(block)
        return out

    @property
    def text(self) -> str:
        """All text blocks of the aggregate, concatenated."""
        return "".join("".join(self._chunks[i]) for i in sorted(self._chunks))


def token_of_call(params: Mapping[str, Any] | None) -> object:
    """The ``partialResultToken`` of a ``tools/call``'s params, if any."""
    meta = params.get("_meta") if params else None
    return meta.get("partialResultToken") if isinstance(meta, Mapping) else None
