"""The server's resume limits (mcp_ws/transport/resume.py): detached connections capped
per principal, in total, and by the memory held for them, the oldest ended first."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from mcp_ws.protocol.resume import ResumeHello
from mcp_ws.transport.resume import ResumeLimits, ResumeTable, principal_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


class FakeCore:
    def __init__(self, token: str, held: int) -> None:
        self.resume_token = token
        self.replay_buffered = held
        self.buffered_received = 0
        self.received_position = 0

    def buffered(self) -> int:
        return 0


class FakeMux:
    """What the table asks of a connection: its core's figures, and `close`."""

    def __init__(self, token: str, held: int = 0) -> None:
        self.core = FakeCore(token, held)
        self.closed = False

    def close(self) -> None:
        self.closed = True

    async def wait_adoption(self, deadline: float) -> None:
        await anyio.sleep_forever()


async def detach_all(table: ResumeTable, muxes: list[FakeMux], order: list[str]) -> None:
    """Detach ``muxes`` one after another (the clock moves between them)."""
    async with anyio.create_task_group() as tg:
        for mux in muxes:
            tg.start_soon(table.wait, mux, anyio.current_time() + 60)  # type: ignore[arg-type]
            await anyio.sleep(0.01)
            order.append(mux.core.resume_token)
        tg.cancel_scope.cancel()


async def test_limits_end_the_oldest_detached_first(anyio_backend: str) -> None:
    table = ResumeTable(limits=ResumeLimits(max_detached=3, max_detached_per_principal=2))
    alice, bob = principal_of("Bearer alice"), principal_of("Bearer bob")
    muxes = [FakeMux(f"t{i}") for i in range(5)]
    owners = [alice, alice, alice, bob, bob]
    for mux, owner in zip(muxes, owners, strict=True):
        table.register(mux, owner)  # type: ignore[arg-type]
    order: list[str] = []
    await detach_all(table, muxes, order)
    # alice's third pushed out her first; bob's second made four in total: her second went.
    assert [m.closed for m in muxes] == [True, True, False, False, False]
    assert table.evicted == 2


async def test_the_memory_budget_ends_the_oldest(anyio_backend: str) -> None:
    table = ResumeTable(limits=ResumeLimits(memory=1000))
    muxes = [FakeMux(f"m{i}", held=400) for i in range(4)]
    for mux in muxes:
        table.register(mux, "")  # type: ignore[arg-type]
    await detach_all(table, muxes, [])
    assert [m.closed for m in muxes] == [True, True, False, False]  # 800 bytes left


def test_tokens_are_random_and_name_the_server() -> None:
    table = ResumeTable(grace=30, node="127.0.0.1:8001", worker="2")
    grants: list[Any] = [table.grant() for _ in range(100)]
    assert len({g.token for g in grants}) == 100
    assert all(len(g.token) == 32 for g in grants)  # 24 random bytes, URL-safe base64
    assert grants[0] == ResumeHello(
        token=grants[0].token, grace=30, node="127.0.0.1:8001", worker="2"
    )
    assert principal_of(None) == principal_of("") == ""
    assert principal_of("Bearer a") != principal_of("Bearer b")
