"""Abuse limits: token buckets for floods, and the local knobs that set them.

These are not wire settings: each side chooses its own tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "TokenBucket"]


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
