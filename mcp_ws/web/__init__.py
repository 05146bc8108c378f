"""The chat page that ``mcp-ws serve --web`` and ``mcp-ws demo --web`` serve beside the
WebSocket endpoint: ``/`` is the page, ``/chat.js`` its script, and
``/mcp-ws-client.browser.js`` the TypeScript client's browser bundle (built from ``js/``
by ``npm run web``, shipped in this package: no build step at run time). All are plain
HTTP GETs, answered at the handshake stage on the same port.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["BUNDLE_NAME", "web_response"]

BUNDLE_NAME = "mcp-ws-client.browser.js"
"""The bundle's file name, in this package and at the root of the served site."""

_PATH_MARKER = "/__MCP_WS_PATH__"


@cache
def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def _answer(body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-cache"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    )
    return Response(200, "OK", headers, body)


def web_response(request: Request, mcp_path: str) -> Response | None:
    """The page or the bundle for a plain GET of ``/`` or the bundle's path; ``None`` for
    anything else (a WebSocket upgrade, another path), which the handshake handles."""
    if "Upgrade" in request.headers:
        return None
    path = request.path.split("?", 1)[0]
    if path in ("/", "/index.html"):
        page = _asset("index.html").replace(_PATH_MARKER.encode(), mcp_path.encode())
        return _answer(page, "text/html; charset=utf-8")
    if path in ("/" + BUNDLE_NAME, "/chat.js"):
        return _answer(_asset(path[1:]), "text/javascript; charset=utf-8")
    return None
