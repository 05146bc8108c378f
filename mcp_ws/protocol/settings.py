"""HELLO settings: defaults, validation, and the map sent on the wire."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .constants import MAX_WINDOW
from .errors import ProtocolError

__all__ = ["DEFAULT_SETTINGS", "MIN_FRAME_SIZE", "MIN_WINDOW", "PROTOCOL_VERSION", "Settings"]

#: The protocol version this implementation speaks.
PROTOCOL_VERSION = 1
#: Smallest legal ``max_frame_size``; also the frame size used before the peer's HELLO.
MIN_FRAME_SIZE = 16384
#: Smallest legal ``initial_window`` / ``connection_window``; also the credit assumed
#: before the peer's HELLO, so pipelined data never exceeds what the peer allows.
MIN_WINDOW = 16384
MAX_FRAME_SIZE_LIMIT = 16777215
MAX_MESSAGE_SIZE_LIMIT = 2**32 - 1
MAX_EXTENSIONS = 64
MAX_EXTENSION_LENGTH = 256

# key -> (lowest, highest) for the integer settings.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "version": (1, 2**31 - 1),
    "max_streams": (1, 2**31 - 1),
    "initial_window": (MIN_WINDOW, MAX_WINDOW),
    "connection_window": (MIN_WINDOW, MAX_WINDOW),
    "max_frame_size": (MIN_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT),
    "max_message_size": (1024, MAX_MESSAGE_SIZE_LIMIT),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What one side allows its peer to do toward it (docs/protocol.md section 4).

    Construct with keywords; out-of-range values raise ``ValueError`` locally, and
    ``Settings.from_wire`` raises ``ProtocolError`` for a peer's bad HELLO.
    """

    version: int = PROTOCOL_VERSION
    max_streams: int = 128
    initial_window: int = 262144
    connection_window: int = 4194304
    max_frame_size: int = 65536
    max_message_size: int = 16777216
    ping_interval: float = 15.0
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _check(dataclasses.asdict(self))
        if problem:
            raise ValueError(problem)

    def to_wire(self) -> dict[str, Any]:
        """The settings map sent in HELLO."""
        wire = dataclasses.asdict(self)
        wire["extensions"] = list(self.extensions)
        if float(self.ping_interval).is_integer():
            wire["ping_interval"] = int(self.ping_interval)
        return wire

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Settings:
        """Settings from a peer's HELLO map: unknown keys ignored, bad values rejected."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        problem = _check(values)
        if problem:
            raise ProtocolError(f"bad HELLO: {problem}")
        if "extensions" in values:
            values["extensions"] = tuple(values["extensions"])
        # A peer with a higher version speaks ours.
        values["version"] = min(values.get("version", PROTOCOL_VERSION), PROTOCOL_VERSION)
        return cls(**values)

    @property
    def reassembly_budget(self) -> int:
        """Connection-wide bytes of incomplete messages the receiver buffers."""
        return 4 * self.max_message_size

    @property
    def receive_memory_bound(self) -> int:
        """The most bytes a receiver with these settings ever holds for its application
        (``docs/protocol.md`` section 6): a stream window for each stream that may hold
        one (``max_streams`` the peer opened, as many of our own), the connection window
        for stream 0, and the reassembly budget for messages larger than a window."""
        streams = 2 * self.max_streams * self.initial_window
        return streams + self.connection_window + self.reassembly_budget


def _check(values: dict[str, Any]) -> str | None:
    for key, (lo, hi) in _INT_RANGES.items():
        if key in values:
            v = values[key]
            if type(v) is not int or not lo <= v <= hi:
                return f"{key} must be an integer in {lo}..{hi}, got {v!r}"
    if "ping_interval" in values:
        v = values["ping_interval"]
        if type(v) not in (int, float) or not 0 <= v <= 86400:
            return f"ping_interval must be a number of seconds in 0..86400, got {v!r}"
    if "extensions" in values:
        ext = values["extensions"]
        if not isinstance(ext, list | tuple) or len(ext) > MAX_EXTENSIONS:
            return f"extensions must be a list of at most {MAX_EXTENSIONS} strings"
        for name in ext:
            if type(name) is not str or len(name) > MAX_EXTENSION_LENGTH:
                return f"extensions must hold strings of at most {MAX_EXTENSION_LENGTH} characters"
    return None


DEFAULT_SETTINGS = Settings()
