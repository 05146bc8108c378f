"""A call store in Redis, shared by several servers: any replica serves a re-attach while
the call runs on another (``mcp-ws serve --store redis://HOST:PORT/DB``).

Needs the ``redis`` extra (``pip install 'mcp-ws-streaming[redis]'``) and asyncio: it
talks to Redis with redis-py's asyncio client, the maintained async client, which is
built on asyncio (on trio, opening it raises `StoreUnavailable`).

Per call, with handle ``H`` (keys under ``prefix``, ``mcpws:`` by default):

- ``mcpws:H:meta``, a hash: ``principal``, ``start`` (the start event), ``first`` and
  ``next`` (the kept seqs), and once it ended ``outcome``; all encoded as MessagePack;
- ``mcpws:H:events``, a Redis Stream: one entry per batch of events as the producer
  wrote them, its ID ``LAST-0`` (the batch's last seq), its fields ``s`` (the first
  seq) and ``e`` (the events, MessagePack one after the other);
- ``mcpws:H:lease``: while the producing server lives, it renews this key every third of
  ``lease`` seconds; a reader that finds neither it nor an outcome gets the outcome
  unknown (-32004), within ``lease`` seconds and one ``poll`` of the producer's death;
- ``mcpws:H:readers``, a hash: each attached reader's cursor and when it last said so,
  so the producer trims only what every live reader has had, and waits (rather than
  drop) at ``max_call_bytes`` while nobody reads;
- ``mcpws:H:cancel``: set by any replica that was asked to cancel the call; the
  producer's server sees it when it renews the lease.

Once a call ends, its keys expire ``retain`` seconds later. There is no total budget
here: give Redis a ``maxmemory`` (the events of running calls are capped per call).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from io import BytesIO
from typing import Any

import anyio
import anyio.abc
import msgpack

from ..protocol.errors import EventsGone, InvalidCursor, StoreUnavailable, UnknownHandle
from ..transport.tcp import asyncio_loop
from .store import DEFAULT_MAX_CALL_BYTES, DEFAULT_RETAIN, decode, encode, new_handle

__all__ = ["DEFAULT_LEASE", "RedisStore", "StoreUnavailable"]

logger = logging.getLogger("mcp_ws.store")

DEFAULT_LEASE = 5.0
"""Seconds a producing server's lease on a call lasts without renewal (at most 15)."""

OUTCOME_UNKNOWN = -32004  # as mcp_ws.sdk.bridge.OUTCOME_UNKNOWN (not imported: no cycle)

READER_STALE = 3.0
"""Seconds after which a reader that has not said where it is counts as gone."""


class _Running:
    """What the producing server knows of one of its running calls."""

    __slots__ = (
        "cursor",
        "drained",
        "flushing",
        "next_seq",
        "on_cancel",
        "origin",
        "pending",
        "size",
        "sizes",
        "written",
    )

    def __init__(self, on_cancel: Callable[[], None] | None) -> None:
        self.next_seq = 1
        self.sizes: deque[int] = deque()  # of the kept events, oldest first
        self.size = 0  # of the kept events, written or pending
        self.pending: list[tuple[int, bytes]] = []  # not yet written to Redis
        self.written = 0  # the last seq written
        self.flushing = False
        self.drained: anyio.Event | None = None  # set when a flush ends, if waited for
        self.origin = True
        self.cursor = 0  # what its own caller has had
        self.on_cancel = on_cancel


class RedisStore:
    """Calls' events and outcomes in Redis (see the module docstring). Use it as
    ``async with RedisStore(url) as store`` (`mcp_ws.serving` and ``mcp-ws serve`` do)."""

    def __init__(
        self,
        url: str,
        *,
        retain: float = DEFAULT_RETAIN,
        max_call_bytes: int = DEFAULT_MAX_CALL_BYTES,
        lease: float = DEFAULT_LEASE,
        poll: float = 0.5,
        prefix: str = "mcpws:",
    ) -> None:
        if retain < 0 or max_call_bytes < 1:
            raise ValueError("retain must be >= 0 and max_call_bytes >= 1")
        if not 0 < lease <= 15:
            raise ValueError("lease must be more than 0 and at most 15 seconds")
        self.url = url
        self.retain = retain
        self.max_call_bytes = max_call_bytes
        self.lease = lease
        self.poll = poll
        self.prefix = prefix
        self._redis: Any = None
        self._running: dict[str, _Running] = {}
        self._group: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> RedisStore:
        if asyncio_loop() is None:
            raise StoreUnavailable("the Redis store needs asyncio (redis-py's async client)")
        try:
            import redis.asyncio as aioredis  # noqa: PLC0415 - an optional extra
        except ImportError:
            raise StoreUnavailable(
                "the Redis store needs the redis extra: pip install 'mcp-ws-streaming[redis]'"
            ) from None
        self._redis = aioredis.from_url(self.url)
        try:
            await self._redis.ping()
        except Exception as exc:
            await self._redis.aclose()
            raise StoreUnavailable(f"Redis at {self.url} does not answer: {exc}") from None
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._renew_leases)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._group is not None
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self._redis.aclose()

    def _key(self, handle: str, part: str) -> str:
        return f"{self.prefix}{handle}:{part}"

    # ------------------------------------------------------------------ the producer

    async def open(
        self,
        principal: str,
        start: Mapping[str, Any],
        on_cancel: Callable[[], None] | None = None,
    ) -> str:
        """A new call; its handle. ``on_cancel`` is called when another replica asks
        for the call to be cancelled."""
        handle = new_handle()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._key(handle, "meta"),
                mapping={"principal": principal, "start": encode(dict(start)), "next": 1},
            )
            pipe.set(self._key(handle, "lease"), b"1", px=int(self.lease * 1000))
            await pipe.execute()
        self._running[handle] = _Running(on_cancel)
        return handle

    def append_nowait(self, handle: str, event: Mapping[str, Any]) -> int | None:
        """Always ``None``: an event goes to Redis with `append`."""
        return None

    async def append(self, handle: str, event: Mapping[str, Any] | bytes) -> int:
        """Keep one event; its seq. Events are written to Redis in batches behind the
        producer (one round trip for all that came meanwhile), so a producer waits for
        Redis only at ``max_call_bytes``, until every live reader (and the call's own
        caller) has had the oldest events."""
        call = self._running[handle]
        data = event if isinstance(event, bytes) else encode(event)
        size = len(data)
        if call.origin:
            call.cursor = call.next_seq - 1  # sent in order: it had the one before
        while call.size + size > self.max_call_bytes and call.sizes:
            if not await self._trim(handle, call):
                await anyio.sleep(self.poll / 5)  # nobody has had them: wait for a reader
        seq = call.next_seq
        call.next_seq = seq + 1
        call.pending.append((seq, data))
        call.sizes.append(size)
        call.size += size
        if not call.flushing:
            call.flushing = True
            assert self._group is not None
            self._group.start_soon(self._flush, handle, call)
        return seq

    async def _flush(self, handle: str, call: _Running) -> None:
        """Write the call's pending events, batch by batch, until none is left."""
        try:
            while call.pending:
                batch, call.pending = call.pending, []
                # One entry per batch, its ID the batch's last seq: the events one after
                # the other (MessagePack is self-delimiting), ``s`` the first one's seq.
                first, last = batch[0][0], batch[-1][0]
                events = b"".join(data for _, data in batch)
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.xadd(
                        self._key(handle, "events"), {"s": first, "e": events}, id=f"{last}-0"
                    )
                    pipe.hset(self._key(handle, "meta"), "next", last + 1)
                    await pipe.execute()
                call.written = batch[-1][0]
        except Exception:
            logger.exception("writing the events of a call to Redis failed")
        finally:
            call.flushing = False
            if call.drained is not None:
                call.drained.set()

    async def _trim(self, handle: str, call: _Running) -> bool:
        """Drop the events every live reader has had; whether any went."""
        floor = call.cursor if call.origin else None
        for cursor in (await self._live_readers(handle)).values():
            floor = cursor if floor is None else min(floor, cursor)
        first = call.next_seq - len(call.sizes)
        if floor is not None:
            floor = min(floor, call.written)  # only what is in Redis can go
        if floor is None or floor < first:
            return False
        dropped = min(floor - first + 1, len(call.sizes))
        for _ in range(dropped):
            call.size -= call.sizes.popleft()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xtrim(self._key(handle, "events"), minid=f"{first + dropped}-0", approximate=False)
            pipe.hset(self._key(handle, "meta"), "first", first + dropped)
            await pipe.execute()
        return True

    async def origin_gone(self, handle: str) -> None:
        """The call's own caller reads no more."""
        call = self._running.get(handle)
        if call is not None:
            call.origin = False

    async def finish(self, handle: str, outcome: Mapping[str, Any]) -> None:
        """The call's one outcome (after its last events); its keys expire ``retain``
        seconds from now."""
        call = self._running.get(handle)
        if call is not None and call.flushing:  # the events first: readers get them before it
            call.drained = anyio.Event()
            await call.drained.wait()
        self._running.pop(handle, None)
        retain = max(int(self.retain * 1000), 1)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(handle, "meta"), "outcome", encode(dict(outcome)))
            pipe.delete(self._key(handle, "lease"))
            for part in ("meta", "events", "readers", "cancel"):
                pipe.pexpire(self._key(handle, part), retain)
            await pipe.execute()

    async def _renew_leases(self) -> None:
        """Renew the lease of every running call of this server, a third of ``lease``
        apart, and pass on cancels other replicas asked for."""
        px = int(self.lease * 1000)
        while True:
            await anyio.sleep(self.lease / 3)
            handles = list(self._running)
            if not handles:
                continue
            async with self._redis.pipeline(transaction=False) as pipe:
                for handle in handles:
                    pipe.set(self._key(handle, "lease"), b"1", px=px)
                    pipe.exists(self._key(handle, "cancel"))
                replies = await pipe.execute()
            for handle, cancelled in zip(handles, replies[1::2], strict=True):
                call = self._running.get(handle)
                if cancelled and call is not None and call.on_cancel is not None:
                    call.on_cancel()

    async def request_cancel(self, handle: str, principal: str) -> bool:
        """Ask the server that runs ``handle`` to cancel it; whether it is a running
        call of ``principal`` (else `UnknownHandle`-worthy, or already finished)."""
        if not await self.owns(handle, principal):
            return False
        await self._redis.set(self._key(handle, "cancel"), b"1", px=int(self.lease * 3000))
        return True

    # ------------------------------------------------------------------ readers

    async def owns(self, handle: str, principal: str) -> bool:
        """Whether ``handle`` is a kept call of ``principal``."""
        if not isinstance(handle, str) or not handle:
            return False
        owner = await self._redis.hget(self._key(handle, "meta"), "principal")
        return owner is not None and hmac.compare_digest(owner, principal.encode())

    async def _live_readers(self, handle: str) -> dict[bytes, int]:
        now = time.time()
        entries = await self._redis.hgetall(self._key(handle, "readers"))
        live = {}
        for reader, value in entries.items():
            cursor, _, said_at = value.partition(b":")
            if now - float(said_at) < READER_STALE:
                live[reader] = int(cursor)
        return live

    async def unread_for(self, handle: str, seconds: float) -> bool:
        """Wait until the running call has had no live reader for ``seconds`` in a row
        (True), or until it ended (False)."""
        unread_since: float | None = None
        while handle in self._running:
            call = self._running[handle]
            read = call.origin or bool(await self._live_readers(handle))
            now = anyio.current_time()
            if read:
                unread_since = None
            elif unread_since is None:
                unread_since = now
            elif now - unread_since >= seconds:
                return True
            await anyio.sleep(min(self.poll, seconds / 2 or self.poll))
        return False

    async def read(
        self, handle: str, principal: str, after: int | None = None
    ) -> AsyncGenerator[tuple[int | None, Mapping[str, Any]], None]:
        """As `EmbeddedStore.read`; a call whose producer died without an outcome ends
        with the outcome unknown (-32004) once its lease ran out."""
        if after is not None and (type(after) is not int or after < 0):
            raise InvalidCursor(after)
        meta_key, events_key = self._key(handle, "meta"), self._key(handle, "events")
        if not await self.owns(handle, principal):
            raise UnknownHandle()
        meta = await self._redis.hgetall(meta_key)
        first, next_seq = int(meta.get(b"first", 1)), int(meta[b"next"])
        earliest = first if first < next_seq else next_seq
        cursor = earliest - 1 if after is None else after
        if cursor + 1 < earliest:
            raise EventsGone(earliest)
        reader = uuid.uuid4().hex.encode()
        readers_key = self._key(handle, "readers")
        await self._say(readers_key, reader, cursor)
        try:
            yield 0, {**decode(meta[b"start"]), "after": cursor}
            block = max(int(self.poll * 1000), 1)
            while True:
                reply = await self._redis.xread({events_key: f"{cursor}-0"}, count=256, block=block)
                entries = reply[0][1] if reply else []
                if entries:
                    earliest = int(entries[0][1][b"s"])
                    if earliest > cursor + 1:
                        raise EventsGone(earliest)  # trimmed while this reader was away
                    for _, fields in entries:
                        seq = int(fields[b"s"])
                        for event in msgpack.Unpacker(BytesIO(fields[b"e"]), raw=False):
                            if seq > cursor:
                                yield seq, event
                                cursor = seq
                            seq += 1
                    await self._say(readers_key, reader, cursor)
                    continue
                await self._say(readers_key, reader, cursor)
                outcome = await self._redis.hget(meta_key, "outcome")
                if outcome is not None:
                    if await self._redis.xread({events_key: f"{cursor}-0"}, count=1):
                        continue  # events that came just before the outcome
                    yield None, decode(outcome)
                    return
                if not await self._redis.exists(self._key(handle, "lease")):
                    message = "outcome unknown: the server running the call is gone"
                    yield None, {"error": {"code": OUTCOME_UNKNOWN, "message": message}}
                    return
        finally:
            with anyio.CancelScope(shield=True):
                await self._redis.hdel(readers_key, reader)

    async def _say(self, key: str, reader: bytes, cursor: int) -> None:
        await self._redis.hset(key, reader, f"{cursor}:{time.time()}")
