"""Who may connect: path, ``Origin`` allow-list and bearer token, checked at the handshake.

A refusal is an HTTP answer (404, 403 or 401) before any MCP traffic.
"""

from __future__ import annotations

import functools
import hmac
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..protocol.constants import COMPAT_SUBPROTOCOL, SUBPROTOCOL

__all__ = [
    "BEARER_SUBPROTOCOL_PREFIX",
    "LOOPBACK_ORIGINS",
    "Authenticator",
    "HandshakePolicy",
    "Refusal",
    "bearer_token",
]

Authenticator = Callable[[str | None], bool | Awaitable[bool]]
"""Called with the bearer token (``None`` when the client sent none); true to accept."""

Refusal = tuple[int, str, dict[str, str]]
"""An HTTP status, a short text body and extra response headers."""

BEARER_SUBPROTOCOL_PREFIX = "mcp-ws.bearer."
"""Browsers cannot set headers on a WebSocket: they offer ``mcp-ws.bearer.<token>``."""

LOOPBACK_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}{port}"
    for scheme in ("http", "https")
    for host in ("localhost", "127.0.0.1", "[::1]")
    for port in ("", ":*")
)
"""The default allow-list: pages served from this machine (DNS-rebinding protection)."""


def bearer_token(*expected: str) -> Authenticator:
    """An authenticator accepting any of the ``expected`` tokens (each compared in
    constant time). Each token is a principal: resume binds a session to the token that
    opened it (docs/protocol.md section 9)."""
    if not expected or not all(expected):
        raise ValueError("give at least one token, and no empty one")
    wanted = [token.encode() for token in expected]

    def check(token: str | None) -> bool:
        if token is None:
            return False
        given = token.encode()
        found = False
        for want in wanted:  # every one compared: the time does not say which matched
            found |= hmac.compare_digest(given, want)
        return found

    return check


@dataclass(frozen=True)
class HandshakePolicy:
    """The checks a server runs on each WebSocket handshake request.

    ``allowed_origins``: ``None`` for `LOOPBACK_ORIGINS`; otherwise glob patterns such as
    ``"https://app.example.com"`` or ``"http://localhost:*"``, or ``["*"]`` for any.
    A request without an ``Origin`` header (not a browser) always passes this check.
    """

    path: str | None = "/mcp"
    allowed_origins: Sequence[str] | None = None
    auth: Authenticator | None = None

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header may connect."""
        if origin is None:
            return True
        patterns = LOOPBACK_ORIGINS if self.allowed_origins is None else self.allowed_origins
        origin = origin.lower()
        return any(_glob(p).fullmatch(origin) for p in patterns)

    async def check(
        self,
        path: str,
        origin: str | None,
        authorization: str | None,
        subprotocols: Sequence[str],
    ) -> Refusal | None:
        """``None`` to accept the handshake, or the HTTP refusal to send."""
        if self.path is not None and path.split("?", 1)[0] != self.path:
            return 404, f"no MCP endpoint here; try {self.path}", {}
        if not self.origin_allowed(origin):
            return 403, f"origin {origin!r} is not allowed", {}
        if self.auth is not None:
            ok = self.auth(bearer_from(authorization, subprotocols))
            if inspect.isawaitable(ok):
                ok = await ok
            if not ok:
                return 401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
        return None


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything; every other character (``[`` of ``[::1]`` too) is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.lower().split("*")))


def bearer_from(authorization: str | None, subprotocols: Sequence[str]) -> str | None:
    """The token from ``Authorization: Bearer ...`` or a ``mcp-ws.bearer.`` subprotocol."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for offered in subprotocols:
        if offered.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return offered[len(BEARER_SUBPROTOCOL_PREFIX) :] or None
    return None


def offered_subprotocols(header_values: Sequence[str]) -> list[str]:
    """Split ``Sec-WebSocket-Protocol`` header values into a list."""
    return [p.strip() for value in header_values for p in value.split(",") if p.strip()]


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """``mcp-ws.v1`` if offered, else ``mcp``, else ``None`` (the bearer one never)."""
    for choice in (SUBPROTOCOL, COMPAT_SUBPROTOCOL):
        if choice in offered:
            return choice
    return None
