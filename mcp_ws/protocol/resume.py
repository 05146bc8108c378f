"""Resume (docs/protocol.md section 9): positions, the replay buffer, the HELLO's map.

When both HELLOs carry a ``resume`` map, every frame after HELLO is numbered (from 1,
each direction on its own), each side tells the other how many of its frames it has
received (on CREDIT and PING, and on a bare ``CREDIT(0, 0, received)`` every
`ACK_EVERY` frames), and keeps the frames the peer has not acknowledged yet. After a
link drops, a new WebSocket carries a HELLO with the token and the position: the frames
the peer has not received are sent again, the ones it has are not, and the connection
goes on as if nothing had happened.

`ReplayBuffer` is the sending half; `ResumeHello` reads and checks the HELLO's map.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from .constants import ErrorCode
from .errors import ProtocolError
from .frames import GoAway, Hello, decode_frame, encode_frame, unpack_message
from .settings import MAX_FRAME_SIZE_LIMIT, Settings

__all__ = [
    "ACK_EVERY",
    "MAX_TOKEN_LENGTH",
    "MAX_UNACKED_BYTES",
    "MAX_UNACKED_FRAMES",
    "NODE_PARAMETER",
    "WORKER_PARAMETER",
    "ReplayBuffer",
    "ResumeHello",
    "refusal",
    "resume_request",
]

ACK_EVERY = 64
"""Frames received without telling the peer our position, at most, before a bare
acknowledgement goes out (CREDIT and PING carry it anyway)."""

MAX_UNACKED_FRAMES = 16384
"""Frames kept for a peer that does not acknowledge them. A peer that lets more pile up
is not following the protocol: resume is given up for that connection (the frames are
freed) rather than holding memory for it."""

MAX_UNACKED_BYTES = 64 * 1024 * 1024
"""Bytes kept for a peer, at most, whatever connection window it declared: a peer that
declares a huge window and never acknowledges loses resume, not the server's memory."""

NODE_PARAMETER = "mcp_ws_node"
"""The URL query parameter a resume carries: the name of the server that holds the
connection (from its HELLO), for a load balancer to route on (README, nginx)."""

WORKER_PARAMETER = "mcp_ws_worker"
"""The URL query parameter naming the worker process behind that server (``mcp-ws
serve --workers``), which the server itself routes on."""

MAX_TOKEN_LENGTH = 256
"""Longest token or node name a HELLO may carry (characters)."""

_MAX_POSITION = 2**64 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeHello:
    """The ``resume`` map of one HELLO, checked.

    A client's first HELLO offers resume with an empty map; the server answers with a
    ``token`` and its ``grace`` in seconds (and may name itself: ``node``). A client
    resuming sends the ``token`` and how many frames it has ``received``; the server
    answers with a new ``token`` and its own ``received``, or with ``refused`` (a reason).
    ``worker`` names the process behind ``node`` that holds the connection (``mcp-ws
    serve --workers``): a client resumes with both in its URL.
    """

    token: str | None = None
    received: int | None = None
    grace: int | None = None
    node: str | None = None
    refused: str | None = None
    worker: str | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ResumeHello | None:
        """The HELLO's ``resume`` map, or ``None`` when it has none; a malformed one is
        a PROTOCOL_ERROR."""
        raw = settings.get("resume")
        if raw is None:
            return None
        if type(raw) is not dict:
            raise ProtocolError("bad HELLO: resume must be a map")
        token = _text(raw, "token")
        node = _text(raw, "node")
        refused = _text(raw, "refused")
        worker = _text(raw, "worker")
        received = _count(raw, "received", _MAX_POSITION)
        grace = _count(raw, "grace", 86400)
        return cls(
            token=token, received=received, grace=grace, node=node, refused=refused, worker=worker
        )

    def to_wire(self) -> dict[str, Any]:
        """The map to put under ``resume`` in a HELLO."""
        wire: dict[str, Any] = {}
        for key in ("token", "received", "grace", "node", "worker", "refused"):
            value = getattr(self, key)
            if value is not None:
                wire[key] = value
        return wire


def _text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not str or not 0 < len(value) <= MAX_TOKEN_LENGTH:
        raise ProtocolError(
            f"bad HELLO: resume {key} must be a string of 1..{MAX_TOKEN_LENGTH} characters"
        )
    return value


def _count(raw: dict[str, Any], key: str, highest: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= highest:
        raise ProtocolError(f"bad HELLO: resume {key} must be an integer in 0..{highest}")
    return value


class ReplayBuffer:
    """The frames we sent that the peer has not acknowledged, numbered from 1.

    Its payload bytes never exceed the peer's connection window: the peer acknowledges
    on every CREDIT, so a byte it has credited back is a byte it has acknowledged, and
    we never send more than its credit allows (docs/protocol.md section 9).

    Frames are kept in the batches `data_to_send` hands over (one list each), so that
    keeping and dropping them costs a step per batch, not per frame.
    """

    __slots__ = ("_batches", "acknowledged", "bytes", "sent")

    def __init__(self) -> None:
        self._batches: deque[tuple[int, list[bytes], int]] = deque()  # (last, frames, bytes)
        self.sent = 0
        """Frames numbered so far (the number of the last one)."""
        self.acknowledged = 0
        """The peer's position: frames it says it has received."""
        self.bytes = 0
        """Bytes of the frames kept (MessagePack, headers included)."""

    def __len__(self) -> int:
        return self.sent - self.acknowledged

    def add(self, frames: list[bytes]) -> None:
        """Number ``frames`` (about to be sent) and keep them."""
        if not frames:
            return
        size = sum(map(len, frames))
        self.sent += len(frames)
        self.bytes += size
        self._batches.append((self.sent, frames, size))

    def acknowledge(self, position: int) -> None:
        """The peer has received frames 1..``position``. A position beyond what we sent
        is a PROTOCOL_ERROR; an older one than we know is ignored (a frame the peer
        queued before a resume carries the position of when it was queued)."""
        if position > self.sent:
            raise ProtocolError(f"acknowledged position {position}, only {self.sent} sent")
        if position <= self.acknowledged:
            return
        batches = self._batches
        while batches and batches[0][0] <= position:
            self.bytes -= batches.popleft()[2]
        if batches:
            last, frames, size = batches[0]
            keep = last - position  # the batch's frames after the position
            if keep < len(frames):
                dropped = frames[: len(frames) - keep]
                gone = sum(map(len, dropped))
                self.bytes -= gone
                batches[0] = (last, frames[len(frames) - keep :], size - gone)
        self.acknowledged = position

    def unacknowledged(self) -> list[bytes]:
        """The frames to send again on a new link, in order."""
        return [frame for _, frames, _ in self._batches for frame in frames]

    def clear(self) -> None:
        """Forget every frame (resume given up)."""
        self._batches.clear()
        self.bytes = 0


def resume_request(data: bytes) -> ResumeHello | None:
    """What a server reads in a new link's first message: the client's resume request
    (a HELLO whose ``resume`` map has a token), or ``None`` for a new connection. A
    request must come alone in its message (the client waits for the answer before it
    sends anything else); anything malformed is a PROTOCOL_ERROR."""
    frames = unpack_message(data, MAX_FRAME_SIZE_LIMIT)
    first = decode_frame(frames[0], MAX_FRAME_SIZE_LIMIT) if frames else None
    if type(first) is not Hello:
        return None  # the connection's own checks will say what is wrong
    resume = ResumeHello.from_settings(first.settings)
    if resume is None or resume.token is None:
        return None
    if len(frames) > 1:
        raise ProtocolError("a resume HELLO must come alone in its message")
    if resume.received is None:
        raise ProtocolError("bad HELLO: a resume needs the position received")
    return resume


def refusal(settings: Settings, reason: str) -> bytes:
    """A server's answer to a resume it cannot honour: HELLO with ``refused``, then
    GOAWAY(NO_ERROR); the client's calls in flight then have an unknown outcome."""
    hello = settings.to_wire()
    hello["resume"] = ResumeHello(refused=reason).to_wire()
    goaway = GoAway(last_stream_id=0, error_code=ErrorCode.NO_ERROR, reason=reason)
    return encode_frame(Hello(settings=hello)) + encode_frame(goaway)
