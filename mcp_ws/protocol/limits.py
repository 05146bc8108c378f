"""Abuse limits: the local knobs, token buckets for floods, and the guards that use them.

These are not wire settings: each side chooses its own tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import EnhanceYourCalmError

__all__ = ["Guards", "Limits", "TokenBucket"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much a peer may do before ENHANCE_YOUR_CALM (rates per second, with a burst).

    - ``cancels``: streams the peer opened that were cancelled or refused before they
      finished (the HTTP/2 rapid-reset attack).
    - ``pings``: PINGs that need an answer.
    - ``useless_frames``: unknown frame types, empty frames that carry nothing, frames for
      long-forgotten streams, PING ACKs we did not ask for.
    - ``max_queued_control``: control replies queued for a peer that does not read.
    - ``hello_timeout``: seconds to wait for the peer's HELLO.
    """

    cancel_rate: float = 200.0
    cancel_burst: int = 500
    ping_rate: float = 10.0
    ping_burst: int = 50
    useless_frame_rate: float = 100.0
    useless_frame_burst: int = 500
    max_queued_control: int = 1000
    hello_timeout: float = 10.0
    recently_closed: int = 1024


class TokenBucket:
    """A bucket of ``burst`` tokens refilled at ``rate`` per second; ``take`` spends one."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one token; ``False`` when the bucket is empty (the limit is crossed)."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Guards:
    """The abuse guards of one connection: what a peer can make us do for free, counted.

    Each check raises ``EnhanceYourCalmError`` (the connection then ends with
    ENHANCE_YOUR_CALM) once the peer crosses the limit it counts.
    """

    __slots__ = ("_cancels", "_clock", "_limits", "_pings", "_replies", "_useless")

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        now = clock()
        self._limits = limits
        self._clock = clock
        self._cancels = TokenBucket(limits.cancel_rate, limits.cancel_burst, now)
        self._pings = TokenBucket(limits.ping_rate, limits.ping_burst, now)
        self._useless = TokenBucket(limits.useless_frame_rate, limits.useless_frame_burst, now)
        self._replies = 0

    def cancel(self) -> None:
        """A stream the peer opened was cancelled or refused before it finished."""
        if not self._cancels.take(self._clock()):
            raise EnhanceYourCalmError("streams opened and cancelled too fast")

    def ping(self) -> None:
        """The peer sent a PING that needs an answer."""
        if not self._pings.take(self._clock()):
            raise EnhanceYourCalmError("PING flood")

    def useless(self, what: str) -> None:
        """The peer sent a frame that does nothing (``what`` says which)."""
        if not self._useless.take(self._clock()):
            raise EnhanceYourCalmError(f"flood of useless frames ({what})")

    def reply(self) -> None:
        """A control reply was queued for the peer (they count until `replies_sent`)."""
        self._replies += 1
        if self._replies > self._limits.max_queued_control:
            raise EnhanceYourCalmError(
                "too many control replies queued for a peer that does not read"
            )

    def replies_sent(self) -> None:
        """Every queued reply went to the writer."""
        self._replies = 0
