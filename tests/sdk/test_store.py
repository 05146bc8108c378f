"""The embedded call store (mcp_ws/sdk/store.py): handles, cursors, live reads, the byte
budgets and retention, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mcp_ws.sdk.store import (
    EVENTS_GONE,
    UNKNOWN_HANDLE,
    EmbeddedStore,
    EventsGone,
    InvalidCursor,
    UnknownHandle,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def event(n: int) -> dict[str, Any]:
    return {"text": f"t{n}"}


async def read_all(
    store: EmbeddedStore, handle: str, who: str, after: int | None = None
) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(5):
        async for seq, item in store.read(handle, who, after):
            out.append((seq, item))
    return out


async def test_a_reader_gets_the_events_after_its_cursor_then_the_outcome(
    anyio_backend: str,
) -> None:
    store = EmbeddedStore()
    handle = store.open("alice")
    for n in range(4):
        assert await store.append(handle, event(n), 10) == n
    store.finish(handle, {"result": "done"})
    outcome = (None, {"result": "done"})
    assert await read_all(store, handle, "alice") == [(n, event(n)) for n in range(4)] + [outcome]
    assert await read_all(store, handle, "alice", after=1) == [
        (2, event(2)),
        (3, event(3)),
        outcome,
    ]
    assert await read_all(store, handle, "alice", after=3) == [outcome]


async def test_live_events_reach_a_reader_and_after_the_last_waits(anyio_backend: str) -> None:
    store = EmbeddedStore()
    handle = store.open("alice")
    await store.append(handle, event(0), 10)
    seen: list[Any] = []

    async def reader() -> None:
        seen.extend(await read_all(store, handle, "alice", after=0))  # past the last: waits

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.05)
        assert seen == []
        await store.append(handle, event(1), 10)
        await store.append(handle, event(2), 10)
        store.finish(handle, {"error": {"code": -32000}})
    assert seen == [(1, event(1)), (2, event(2)), (None, {"error": {"code": -32000}})]


async def test_unknown_foreign_and_malformed_handles_are_refused_alike(anyio_backend: str) -> None:
    store = EmbeddedStore()
    handle = store.open("alice")
    assert len(handle) == 32  # 24 random bytes, URL-safe base64
    assert len({store.open("alice") for _ in range(50)}) == 50
    messages = []
    for who, which in (("bob", handle), ("alice", "x" * 32), ("alice", "")):
        with pytest.raises(UnknownHandle) as caught:
            await read_all(store, which, who)
        assert caught.value.code == UNKNOWN_HANDLE
        messages.append(str(caught.value))
    assert len(set(messages)) == 1
    with pytest.raises(InvalidCursor) as bad:
        await read_all(store, handle, "alice", after=-1)
    assert bad.value.code == -32602


async def test_a_call_at_its_budget_trims_what_its_caller_has_read(anyio_backend: str) -> None:
    store = EmbeddedStore(max_call_bytes=100)
    handle = store.open("alice")
    for n in range(10):
        await store.append(handle, event(n), 20)
        store.delivered(handle, n)  # the caller reads as it goes
    assert store.bytes <= 100
    with pytest.raises(EventsGone) as gone:
        await read_all(store, handle, "alice", after=0)
    assert gone.value.code == EVENTS_GONE
    assert gone.value.data == {"earliestSeq": 5}
    store.finish(handle, {"result": 1})
    assert [s for s, _ in await read_all(store, handle, "alice", after=4)] == [5, 6, 7, 8, 9, None]


async def test_with_no_reader_the_producer_waits_at_the_budget(anyio_backend: str) -> None:
    """Nothing a client could still come back for is dropped: the producer waits until
    a reader (coming back) has had the oldest events."""
    store = EmbeddedStore(max_call_bytes=100)
    handle = store.open("alice")
    store.origin_gone(handle)  # the caller's session ended
    for n in range(5):
        await store.append(handle, event(n), 20)
    produced: list[int] = []

    async def producer() -> None:
        for n in range(5, 8):
            produced.append(await store.append(handle, event(n), 20))
        store.finish(handle, {"result": "end"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.sleep(0.05)
        assert produced == []  # waiting at the budget, nothing dropped
        got = await read_all(store, handle, "alice")
    assert [s for s, _ in got] == [0, 1, 2, 3, 4, 5, 6, 7, None]
    assert produced == [5, 6, 7]


async def test_the_total_budget_trims_the_oldest_finished_call_first(anyio_backend: str) -> None:
    store = EmbeddedStore(max_total_bytes=100)
    old, new = store.open("a"), store.open("a")
    for n in range(4):
        await store.append(old, event(n), 20)
    store.finish(old, {"result": "old"})
    for n in range(3):
        await store.append(new, event(n), 20)
    assert store.bytes <= 100
    with pytest.raises(EventsGone) as gone:
        await read_all(store, old, "a", after=0)
    assert gone.value.earliest_seq == 2
    store.finish(new, {"result": "new"})
    assert [s for s, _ in await read_all(store, new, "a", after=None)] == [0, 1, 2, None]


async def test_a_finished_call_is_kept_for_retain_seconds(anyio_backend: str) -> None:
    now = [0.0]
    store = EmbeddedStore(retain=300, clock=lambda: now[0])
    handle = store.open("alice")
    await store.append(handle, event(0), 10)
    store.finish(handle, {"result": 1})
    now[0] = 299.0
    assert [s for s, _ in await read_all(store, handle, "alice")] == [0, None]
    now[0] = 300.0
    with pytest.raises(UnknownHandle):
        await read_all(store, handle, "alice")
    assert store.bytes == 0
    assert len(store) == 0
