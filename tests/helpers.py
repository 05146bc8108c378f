"""Test helpers: a controllable clock, a frame factory and a connected pair of peers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from mcp_ws.protocol import (
    Connection,
    Event,
    Limits,
    MessageReceived,
    Role,
    Settings,
    decode_message,
)
from mcp_ws.protocol.frames import Frame


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def raw(*fields: Any) -> bytes:
    """One frame from raw fields, packed exactly as given (for bad-input tests)."""
    return bytes(msgpack.packb(list(fields), use_bin_type=True))


def hello(**settings: Any) -> bytes:
    return raw(0, 0, 0, settings)


def request(rid: int = 1, method: str = "tools/call", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def result(rid: int = 1, **fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": fields}


def notification(method: str = "notifications/progress", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def payload(message: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(message, use_bin_type=True))


def frames_of(messages: list[bytes]) -> list[Frame]:
    """Decode what a peer sent (generous limits: this is the test's own view)."""
    out: list[Frame] = []
    for m in messages:
        out.extend(decode_message(m, max_frame_size=16777215))
    return out


@dataclass
class Pair:
    """A client and a server wired back to back, with a shared fake clock.

    ``flush()`` moves bytes both ways until both are quiet and returns the events each
    side saw. Nothing is acknowledged automatically unless ``auto_ack`` is set.
    """

    client_settings: Settings | None = None
    server_settings: Settings | None = None
    limits: Limits | None = None
    auto_ack: bool = False
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.client = Connection(
            Role.CLIENT, self.client_settings, limits=self.limits, clock=self.clock
        )
        self.server = Connection(
            Role.SERVER, self.server_settings, limits=self.limits, clock=self.clock
        )
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.wire_bytes = 0

    def _deliver(self, src: Connection, dst: Connection, sink: list[Event]) -> bool:
        moved = False
        for message in src.data_to_send():
            moved = True
            self.wire_bytes += len(message)
            events = dst.receive_data(message)
            sink.extend(events)
            if self.auto_ack:
                for e in events:
                    if isinstance(e, MessageReceived):
                        dst.acknowledge_received(e.stream_id, e.flow_controlled_length)
        return moved

    def flush(self, rounds: int = 1000) -> tuple[list[Event], list[Event]]:
        start_c, start_s = len(self.client_events), len(self.server_events)
        for _ in range(rounds):
            a = self._deliver(self.client, self.server, self.server_events)
            b = self._deliver(self.server, self.client, self.client_events)
            if not (a or b):
                break
        else:  # pragma: no cover - a livelock is a bug
            raise AssertionError("pair did not go quiet")
        return self.client_events[start_c:], self.server_events[start_s:]

    def messages(self, side: str) -> list[MessageReceived]:
        events = self.client_events if side == "client" else self.server_events
        return [e for e in events if isinstance(e, MessageReceived)]


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]
