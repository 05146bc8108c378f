from __future__ import annotations

import pytest

from .helpers import FakeClock, Pair


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pair() -> Pair:
    """A client/server pair after the HELLO exchange."""
    p = Pair()
    p.flush()
    return p


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every I/O test runs on both backends."""
    return str(request.param)
