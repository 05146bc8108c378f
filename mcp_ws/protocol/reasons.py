"""Reasons: the text of CANCEL, GOAWAY and WebSocket close frames, cut by UTF-8 bytes.

A WebSocket close frame holds at most 123 bytes of reason (RFC 6455 section 5.5: 125
bytes of control payload, 2 of them the code), and our CANCEL and GOAWAY reasons at most
256 (``docs/protocol.md`` section 2). Cutting by characters is not enough: 120
characters of "é" are 240 bytes, which made the close itself fail. Every reason that
reaches a frame goes through `truncate_utf8`.
"""

from __future__ import annotations

__all__ = ["MAX_CLOSE_REASON_BYTES", "MAX_REASON_BYTES", "close_reason", "truncate_utf8"]

#: CANCEL and GOAWAY reasons are cut to this many UTF-8 bytes (sent and received).
MAX_REASON_BYTES = 256
#: The longest reason a WebSocket close frame can carry, in UTF-8 bytes.
MAX_CLOSE_REASON_BYTES = 123


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character.

    Characters that cannot be encoded (lone surrogates) become ``?``.
    """
    encoded = text.encode("utf-8", errors="replace")
    return encoded[:limit].decode("utf-8", errors="ignore")


def close_reason(text: str) -> str:
    """``text`` made fit for a WebSocket close frame (at most 123 bytes of UTF-8)."""
    return truncate_utf8(text, MAX_CLOSE_REASON_BYTES)
