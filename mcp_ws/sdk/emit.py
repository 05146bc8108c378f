"""How a server sends partial results to the client of one request (a ``tools/call``,
or an ``io.github.mcp-ws/attach``): on the request's own mcp-ws stream, with that
stream's credit, else as JSON ``notifications/tools/partial_result`` related to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from .calls import handling_bridge
from .streaming import PARTIAL_RESULT, as_json_safe

__all__ = ["PartialEmitter"]


class _Notification(BaseModel):
    """Any notification, for ``ServerSession.send_notification`` (it only dumps it)."""

    method: str
    params: dict[str, Any]


class PartialEmitter:
    """Sends the partial results of one request (a ``tools/call``, or an attach) to
    the client that sent it: on its mcp-ws stream with that stream's credit, else as
    JSON notifications related to the request."""

    def __init__(self, ctx: Any, token: str | int) -> None:
        request = getattr(ctx, "request_context", ctx)  # MCPServer Context or low-level
        self.token = token
        self.bridge = handling_bridge()
        self._session = request.session
        self._request_id = request.request_id

    async def emit(self, seq: int, fields: Mapping[str, Any], *, detachable: bool = False) -> None:
        """Send event ``fields`` as partial result ``seq``. ``detachable``: once the
        connection is gone, raise `CallClosedError` at once (the call runs on)."""
        params = {"partialResultToken": self.token, "seq": seq, **fields}
        if self.bridge is not None:
            message = {"jsonrpc": "2.0", "method": PARTIAL_RESULT, "params": params}
            # the start and the first delta go out at once; later ones may coalesce
            await self.bridge.send_related(
                self._request_id, message, urgent=seq <= 1, wait_for_cancel=not detachable
            )
            return
        if "content" in params:
            params["content"] = [as_json_safe(b) for b in params["content"]]
        await self._session.send_notification(
            _Notification(method=PARTIAL_RESULT, params=params),
            related_request_id=self._request_id,
        )
