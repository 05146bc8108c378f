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
