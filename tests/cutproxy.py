"""A TCP relay on loopback that cuts its connections: at a command, at random times, or
after a random number of bytes (so mid-frame and mid-message), for the resume tests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc


class CutProxy:
    """Relays each accepted connection to ``127.0.0.1:upstream``. `cut` drops every
    connection it relays now (no closing handshake: each side sees its TCP connection
    end); ``closed`` makes it drop new ones at once (the server looks unreachable)."""

    def __init__(self, upstream: int, *, seed: int = 0) -> None:
        self.upstream = upstream
        self.port = 0
        self.closed = False
        self.cuts = 0
        self.accepted = 0
        self.byte_budget: tuple[int, int] | None = None
        """Cut each connection after a random number of bytes in this range (each way)."""
        self._rng = random.Random(seed)
        self._live: set[anyio.CancelScope] = set()

    def url(self, path: str = "/mcp") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def cut(self) -> int:
        """Drop every relayed connection now; returns how many."""
        scopes = list(self._live)
        for scope in scopes:
            scope.cancel()
        self.cuts += len(scopes)
        return len(scopes)

    async def cut_every(self, low: float, high: float, times: int) -> None:
        """Cut ``times`` times, waiting between ``low`` and ``high`` seconds before each."""
        for _ in range(times):
            await anyio.sleep(self._rng.uniform(low, high))
            self.cut()

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        async with client:
            if self.closed:
                return
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.upstream)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                self._live.add(tg.cancel_scope)
                tg.start_soon(self._pipe, client, upstream, tg.cancel_scope)
                tg.start_soon(self._pipe, upstream, client, tg.cancel_scope)
            self._live.discard(tg.cancel_scope)

    async def _pipe(
        self,
        source: anyio.abc.SocketStream,
        sink: anyio.abc.SocketStream,
        scope: anyio.CancelScope,
    ) -> None:
        budget = self._rng.randint(*self.byte_budget) if self.byte_budget else None
        try:
            async for chunk in source:
                if budget is not None and len(chunk) >= budget:
                    if budget:
                        await sink.send(chunk[:budget])  # part of a frame, then the cut
                    self.cuts += 1
                    break
                if budget is not None:
                    budget -= len(chunk)
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()


@asynccontextmanager
async def cut_proxy(upstream: int, *, seed: int = 0) -> AsyncIterator[CutProxy]:
    """A `CutProxy` listening on a free loopback port while the block runs."""
    proxy = CutProxy(upstream, seed=seed)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy.port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._relay)
        try:
            yield proxy
        finally:
            proxy.closed = True
            proxy.cut()
            tg.cancel_scope.cancel()
