"""The embedded call store (mcp_ws/sdk/store.py): handles, cursors, live reads, the byte
budgets and retention, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import msgpack
import pytest

from mcp_ws.sdk.store import (
    CALL_OVERHEAD,
    EVENT_OVERHEAD,
    EVENTS_GONE,
    UNKNOWN_HANDLE,
    EmbeddedStore,
    EventsGone,
    InvalidCursor,
    UnknownHandle,
    new_handle,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


START = {"event": "start", "meta": {"model": "m"}}
FIXED = CALL_OVERHEAD + len(repr(START))  # what a call is counted for beyond its events


EVENT = 100  # what the store counts for each event(n)


def event(n: int) -> dict[str, Any]:
    """An event the store counts as `EVENT` bytes: its encoding, and `EVENT_OVERHEAD`."""
    return {"text": f"t{n:02d}" + "x" * (EVENT - EVENT_OVERHEAD - 11)}


def test_an_event_is_counted_by_its_encoding_and_its_overhead() -> None:
    assert {len(msgpack.packb(event(n))) + EVENT_OVERHEAD for n in range(100)} == {EVENT}


async def read_all(
    store: EmbeddedStore, handle: str, who: str, after: int | None = None
) -> list[Any]:
    """What a read yields after the start (checked: first, with the reader's cursor)."""
    out: list[Any] = []
    with anyio.fail_after(5):
        async for seq, item in store.read(handle, who, after):
            out.append((seq, item))
    assert out[0][0] == 0
    assert out[0][1] == {**START, "after": after if after is not None else out[0][1]["after"]}
    return out[1:]


async def test_a_reader_gets_the_events_after_its_cursor_then_the_outcome(
    anyio_backend: str,
) -> None:
    store = EmbeddedStore()
    handle = await store.open("alice", START)
    for n in range(1, 5):
        assert await store.append(handle, event(n)) == n  # seq 0 is the start
    await store.finish(handle, {"result": "done"})
    outcome = (None, {"result": "done"})
    every = [(n, event(n)) for n in range(1, 5)]
    assert await read_all(store, handle, "alice") == [*every, outcome]
    assert await read_all(store, handle, "alice", after=0) == [*every, outcome]
    assert await read_all(store, handle, "alice", after=2) == [
        (3, event(3)),
        (4, event(4)),
        outcome,
    ]
    assert await read_all(store, handle, "alice", after=4) == [outcome]


async def test_live_events_reach_a_reader_and_after_the_last_waits(anyio_backend: str) -> None:
    store = EmbeddedStore()
    handle = await store.open("alice", START)
    await store.append(handle, event(1))
    seen: list[Any] = []

    async def reader() -> None:
        seen.extend(await read_all(store, handle, "alice", after=1))  # past the last: waits

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.05)
        assert seen == []
        assert store.readers(handle) == 2  # the caller and this read
        await store.append(handle, event(2))
        await store.append(handle, event(3))
        await store.finish(handle, {"error": {"code": -32000}})
    assert seen == [(2, event(2)), (3, event(3)), (None, {"error": {"code": -32000}})]
    assert store.readers(handle) == 0  # the caller has its outcome, the read ended


async def test_unknown_foreign_and_malformed_handles_are_refused_alike(anyio_backend: str) -> None:
    store = EmbeddedStore()
    handle = await store.open("alice", START)
    assert len(handle) == 32  # 24 random bytes, URL-safe base64
    assert len({await store.open("alice", START) for _ in range(50)}) == 50
    assert await store.owns(handle, "alice")
    assert not await store.owns(handle, "bob")
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
    store = EmbeddedStore(max_call_bytes=5 * EVENT)
    handle = await store.open("alice", START)
    for n in range(1, 11):
        await store.append(handle, event(n))
        store.delivered(handle, n)  # the caller reads as it goes
    assert store.bytes <= 5 * EVENT + FIXED
    with pytest.raises(EventsGone) as gone:
        await read_all(store, handle, "alice", after=0)
    assert gone.value.code == EVENTS_GONE
    assert gone.value.data == {"earliestSeq": 6}
    await store.finish(handle, {"result": 1})
    assert [s for s, _ in await read_all(store, handle, "alice", after=5)] == [6, 7, 8, 9, 10, None]
    # after=None: from the first kept event
    assert [s for s, _ in await read_all(store, handle, "alice")] == [6, 7, 8, 9, 10, None]


async def test_only_what_every_reader_has_had_is_trimmed(anyio_backend: str) -> None:
    """The caller ran ahead; an attached reader behind it keeps the events it has not had."""
    store = EmbeddedStore(max_call_bytes=5 * EVENT)
    handle = await store.open("alice", START)
    for n in range(1, 4):
        await store.append(handle, event(n))
    seen: list[Any] = []
    reads = store.read(handle, "alice", after=0)
    seen.append(await reads.__anext__())  # the start: this reader is at 0
    for n in range(4, 6):
        await store.append(handle, event(n))
        store.delivered(handle, n)  # the caller has had everything
    blocked: list[int] = []

    async def producer() -> None:
        blocked.append(await store.append(handle, event(6)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.sleep(0.05)
        assert blocked == []  # the reader at 0 holds events 1..5
        seen.append(await reads.__anext__())  # 1 is on its way...
        seen.append(await reads.__anext__())  # ...and had once it asks for more: 1 goes
    assert blocked == [6]
    await reads.aclose()
    assert [s for s, _ in seen] == [0, 1, 2]


async def test_with_no_reader_the_producer_waits_at_the_budget(anyio_backend: str) -> None:
    """Nothing a client could still come back for is dropped: the producer waits until
    a reader (coming back) has had the oldest events."""
    store = EmbeddedStore(max_call_bytes=5 * EVENT)
    handle = await store.open("alice", START)
    await store.origin_gone(handle)  # the caller's session ended
    for n in range(1, 6):
        await store.append(handle, event(n))
    produced: list[int] = []

    async def producer() -> None:
        for n in range(6, 9):
            produced.append(await store.append(handle, event(n)))
        await store.finish(handle, {"result": "end"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.sleep(0.05)
        assert produced == []  # waiting at the budget, nothing dropped
        got = await read_all(store, handle, "alice")
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6, 7, 8, None]
    assert produced == [6, 7, 8]


async def test_unread_for_says_when_a_call_went_unread(anyio_backend: str) -> None:
    store = EmbeddedStore()
    handle = await store.open("alice", START)
    await store.origin_gone(handle)
    with anyio.fail_after(5):
        assert await store.unread_for(handle, 0.05)  # nobody reads
        reads = store.read(handle, "alice")
        await reads.__anext__()
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.unread_for, handle, 0.05)
            await anyio.sleep(0.2)  # a reader is attached: it keeps waiting
            await store.finish(handle, {"result": 1})
        assert not await store.unread_for(handle, 0.05)  # finished
        await reads.aclose()


async def test_the_total_budget_trims_the_oldest_finished_call_first(anyio_backend: str) -> None:
    store = EmbeddedStore(max_total_bytes=6 * EVENT + 2 * FIXED)
    old, new = await store.open("a", START), await store.open("a", START)
    for n in range(1, 5):
        await store.append(old, event(n))
    await store.finish(old, {"result": "old"})
    for n in range(1, 4):
        await store.append(new, event(n))
    assert store.bytes <= store.max_total_bytes
    with pytest.raises(EventsGone) as gone:
        await read_all(store, old, "a", after=0)
    assert gone.value.earliest_seq == 3
    await store.finish(new, {"result": "new"})
    assert [s for s, _ in await read_all(store, new, "a", after=None)] == [1, 2, 3, None]


async def test_a_finished_call_is_kept_for_retain_seconds(anyio_backend: str) -> None:
    now = [0.0]
    store = EmbeddedStore(retain=300, clock=lambda: now[0])
    handle = await store.open("alice", START)
    await store.append(handle, event(1))
    await store.finish(handle, {"result": 1})
    now[0] = 299.0
    assert [s for s, _ in await read_all(store, handle, "alice")] == [1, None]
    now[0] = 300.0
    with pytest.raises(UnknownHandle):
        await read_all(store, handle, "alice")
    assert store.bytes == 0
    assert len(store) == 0


async def test_past_the_total_budget_the_oldest_finished_calls_are_forgotten(
    anyio_backend: str,
) -> None:
    """Outcomes count too: finished calls no one reads go, oldest first, to fit."""
    outcome = len(msgpack.packb({"result": "x" * 1000}))
    store = EmbeddedStore(max_total_bytes=3 * (FIXED + outcome))
    handles = []
    for _ in range(5):
        handle = await store.open("a", START)
        await store.finish(handle, {"result": "x" * 1000})
        handles.append(handle)
    assert store.bytes <= store.max_total_bytes
    assert len(store) == 3
    with pytest.raises(UnknownHandle):
        await read_all(store, handles[0], "a")
    assert [s for s, _ in await read_all(store, handles[4], "a")] == [None]


async def test_at_the_total_budget_a_producer_no_one_reads_waits(anyio_backend: str) -> None:
    """Running calls' unread events are never dropped for the total budget: the
    producer waits until a reader has had some (or a finished call's room is freed)."""
    total = 2 * FIXED + 5 * EVENT
    store = EmbeddedStore(max_total_bytes=total, max_unread_bytes=total)  # the total only
    first, second = await store.open("a", START), await store.open("a", START)
    await store.origin_gone(first)
    await store.origin_gone(second)
    for n in range(1, 4):
        await store.append(first, event(n))
    for n in range(1, 3):
        await store.append(second, event(n))
    done: list[int] = []

    async def producer() -> None:
        done.append(await store.append(second, event(3)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.sleep(0.05)
        assert done == []  # 100 bytes held, none of it read
        reads = store.read(first, "a", after=0)
        await reads.__anext__()  # the start
        await reads.__anext__()  # 1 is on its way
        await reads.__anext__()  # 1 was had: it goes, and there is room
    await reads.aclose()
    assert done == [3]
    assert store.bytes <= store.max_total_bytes


async def test_calls_no_one_reads_hold_at_most_their_share_together(anyio_backend: str) -> None:
    """Vanished clients' calls cannot fill the store: past ``max_unread_bytes`` their
    producers wait (nothing dropped), while a call its client reads goes on, and a
    reader coming back (or such a call ending) lets them go on."""
    store = EmbeddedStore(max_unread_bytes=3 * EVENT)
    first, second = await store.open("a", START), await store.open("a", START)
    read = await store.open("b", START)
    await store.origin_gone(first)
    await store.origin_gone(second)
    assert await store.append(first, event(1)) == 1
    assert await store.append(first, event(2)) == 2
    assert await store.append(second, event(1)) == 1
    assert store.unread_bytes == 3 * EVENT
    assert store.append_nowait(second, event(2)) is None  # past the share: not at once
    done: list[tuple[str, int]] = []

    async def produce(name: str, handle: str, n: int) -> None:
        done.append((name, await store.append(handle, event(n))))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, "second", second, 2)
            await anyio.sleep(0.05)
            assert done == []  # waits: the calls no one reads hold their share
            for n in range(1, 11):  # a call its client reads is not held back
                assert store.append_nowait(read, event(n)) == n
            reads = store.read(first, "a")
            await reads.__anext__()  # a reader came back for the first call
            await anyio.sleep(0.05)
            assert done == [("second", 2)]
            assert store.unread_bytes == 2 * EVENT  # the second call's, the only one unread
            tg.start_soon(produce, "second", second, 3)
            tg.start_soon(produce, "second", second, 4)
            await anyio.sleep(0.05)
            assert done == [("second", 2), ("second", 3)]
            await reads.aclose()  # gone again: the first call counts again
            assert store.unread_bytes == 5 * EVENT
            await store.finish(first, {"result": 1})  # ended: its events may go any time
            assert store.unread_bytes == 3 * EVENT  # the second call's: still held
            await anyio.sleep(0.05)
            assert done == [("second", 2), ("second", 3)]
            again = store.read(second, "a", after=3)
            await again.__anext__()  # a reader for the second call: it goes on
            await anyio.sleep(0.05)
            assert done == [("second", 2), ("second", 3), ("second", 4)]
            await again.aclose()
    assert store.unread_bytes == 4 * EVENT


async def test_the_share_of_calls_no_one_reads_is_a_quarter_of_the_total_by_default() -> None:
    assert EmbeddedStore().max_unread_bytes == 64 * 1024 * 1024
    assert EmbeddedStore(max_total_bytes=4000).max_unread_bytes == 1000
    with pytest.raises(ValueError, match="budgets"):
        EmbeddedStore(max_unread_bytes=0)


def test_no_handle_starts_with_a_dash() -> None:
    """``mcp-ws attach URL HANDLE``: a handle starting with ``-`` would be taken for an
    option (one URL-safe base64 handle in 64 did; 2,000 of them all missed it with odds
    of about 2e-14)."""
    handles = [new_handle() for _ in range(2000)]
    assert not [h for h in handles if h.startswith("-")]
    assert {len(h) for h in handles} == {32}
    assert len(set(handles)) == 2000
