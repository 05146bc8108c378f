"""A server's side of resume (docs/protocol.md section 9): tokens, detached
connections, and the limits on what they hold.

Each connection that agreed to resume gets a token (192 random bits). When its link
drops, the connection *detaches*: its session and tools go on, held by flow control,
for the grace period. A new WebSocket whose first message asks to resume with that
token (from the same principal) takes over; the token changes at every resume, and the
old one stops working as soon as the client speaks on the new link. Anything else is
refused with the same answer, whatever the reason (`REFUSAL`), so a guess learns nothing.

Limits, for everything detached at once: `ResumeLimits`. Past them the connection
detached longest ago is ended (its client's calls get the outcome-unknown error).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

import anyio

from ..protocol.errors import ProtocolError
from ..protocol.resume import ResumeHello, refusal
from ..protocol.settings import Settings
from .mux import MuxConnection
from .websocket import MessageChannel

__all__ = ["DEFAULT_GRACE", "REFUSAL", "ResumeLimits", "ResumeTable", "principal_of"]

logger = logging.getLogger("mcp_ws.transport")

DEFAULT_GRACE = 60
"""Seconds a detached connection waits for its client (``mcp-ws serve --resume-grace``)."""

REFUSAL = "no such session to resume"
"""The one reason given for every refused resume."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeLimits:
    """What a server keeps for clients that are gone (``mcp-ws serve --max-detached``)."""

    max_detached: int = 1024
    """Detached connections at once, in total."""
    max_detached_per_principal: int = 64
    """Detached connections at once for one principal (bearer token)."""
    memory: int = 256 * 1024 * 1024
    """Bytes held for detached connections (queued for them, kept for their replay, and
    received but unread), counted each time one detaches."""


def principal_of(authorization: str | None) -> str:
    """Who a connection is, for binding tokens: a digest of its ``Authorization``
    header ("" when it has none: every anonymous client is the same principal)."""
    if not authorization:
        return ""
    return hashlib.sha256(authorization.encode()).hexdigest()


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class _Entry:
    __slots__ = ("detached_at", "mux", "previous", "principal", "rotated_at", "token")

    def __init__(self, mux: MuxConnection, principal: str, token: str) -> None:
        self.mux = mux
        self.principal = principal
        self.token = token
        self.previous: str | None = None  # good until the client speaks after a resume
        self.rotated_at = 0  # the connection's received position when the token changed
        self.detached_at: float | None = None


class ResumeTable:
    """The resumable connections of one server process."""

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        node: str = "",
        worker: str | None = None,
        limits: ResumeLimits | None = None,
    ) -> None:
        self.grace = grace
        self.node = node
        self.worker = worker
        self.limits = limits or ResumeLimits()
        self.refused = 0
        """Resumes refused so far."""
        self.evicted = 0
        """Detached connections ended early by the limits."""
        self._by_token: dict[bytes, _Entry] = {}
        self._by_mux: dict[MuxConnection, _Entry] = {}

    @property
    def detached(self) -> int:
        """Connections waiting for their client now."""
        return sum(1 for e in self._by_mux.values() if e.detached_at is not None)

    def grant(self) -> ResumeHello:
        """What a new connection's HELLO says: a fresh token, the grace, our name."""
        return ResumeHello(
            token=secrets.token_urlsafe(24),
            grace=int(self.grace),
            node=self.node or None,
            worker=self.worker,
        )

    def register(self, mux: MuxConnection, principal: str) -> None:
        """``mux`` was made with `grant`'s token."""
        token = mux.core.resume_token
        if token is None:
            return
        entry = _Entry(mux, principal, token)
        self._by_token[_key(token)] = entry
        self._by_mux[mux] = entry

    def forget(self, mux: MuxConnection) -> None:
        """``mux`` is over: its tokens stop working."""
        entry = self._by_mux.pop(mux, None)
        if entry is not None:
            self._by_token.pop(_key(entry.token), None)
            if entry.previous is not None:
                self._by_token.pop(_key(entry.previous), None)

    async def wait(self, mux: MuxConnection, deadline: float) -> MessageChannel | None:
        """`MuxConnection`'s relink on a server: detach, within the limits, and wait for
        the client until ``deadline``."""
        entry = self._by_mux.get(mux)
        if entry is None:
            return None
        entry.detached_at = anyio.current_time()
        self._enforce_limits()
        try:
            return await mux.wait_adoption(deadline)
        finally:
            entry.detached_at = None

    async def resume(
        self, channel: MessageChannel, ask: ResumeHello, principal: str, settings: Settings
    ) -> None:
        """A new link asks to resume: hand it to its connection (returns when that link
        is over) or refuse it."""
        entry = self._by_token.get(_key(ask.token or ""))
        if entry is not None and not _valid(entry, ask, principal):
            entry = None
        if entry is not None and ask.received is not None:
            try:
                await self._adopt(entry, channel, ask)
                return
            except (ProtocolError, anyio.BrokenResourceError) as exc:
                logger.info("resume refused: %s", exc)
        self.refused += 1
        await _refuse(channel, settings)

    async def _adopt(self, entry: _Entry, channel: MessageChannel, ask: ResumeHello) -> None:
        assert ask.token is not None
        assert ask.received is not None
        mux = entry.mux
        new = secrets.token_urlsafe(24)

        def accepted() -> None:
            # A new token at every resume; the one just presented holds until the client
            # speaks on the new link (its answer may be lost with that link), any other
            # goes. Only now: a resume refused changes nothing.
            for stale in (entry.token, entry.previous):
                if stale is not None and stale != ask.token:
                    self._by_token.pop(_key(stale), None)
            entry.previous = ask.token
            entry.token = new
            self._by_token[_key(new)] = entry
            entry.rotated_at = mux.core.received_position  # the old link is over

        await mux.adopt(channel, ask.received, new, accepted)

    def _enforce_limits(self) -> None:
        limits = self.limits
        detached = sorted(
            (e for e in self._by_mux.values() if e.detached_at is not None),
            key=lambda e: e.detached_at or 0.0,
        )
        held = sum(_held(e.mux) for e in detached)
        per: dict[str, int] = {}
        for e in detached:
            per[e.principal] = per.get(e.principal, 0) + 1
        for e in list(detached):
            over_total = len(detached) > limits.max_detached
            over_principal = per[e.principal] > limits.max_detached_per_principal
            if not (over_total or over_principal or held > limits.memory):
                continue
            logger.info("ending a detached connection: over the resume limits")
            detached.remove(e)
            per[e.principal] -= 1
            held -= _held(e.mux)
            self.evicted += 1
            e.detached_at = None  # ending: not counted again
            e.mux.close()


def _valid(entry: _Entry, ask: ResumeHello, principal: str) -> bool:
    if not hmac.compare_digest(entry.principal, principal):
        return False
    token = ask.token or ""
    if hmac.compare_digest(entry.token, token):
        return True
    # The previous token: only while the client has not spoken since it changed.
    previous = entry.previous
    return (
        previous is not None
        and hmac.compare_digest(previous, token)
        and entry.mux.core.received_position == entry.rotated_at
    )


def _held(mux: MuxConnection) -> int:
    core = mux.core
    return core.buffered() + core.replay_buffered + core.buffered_received


async def _refuse(channel: MessageChannel, settings: Settings) -> None:
    try:
        await channel.send([refusal(settings, REFUSAL)])
        await channel.close(1000, REFUSAL)
        with anyio.move_on_after(1):
            while await channel.receive() is not None:
                pass
    except anyio.BrokenResourceError:
        pass
    finally:
        await channel.aclose()
