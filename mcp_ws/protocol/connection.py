"""The sans-I/O mcp-ws connection: bytes in, events out; calls in, bytes out.

A ``Connection`` never does I/O and never reads a clock it was not given::

    conn = Connection(Role.CLIENT)
    sid = conn.open_stream({"jsonrpc": "2.0", "id": 1, "method": "ping"}, end=True)
    for message in conn.data_to_send():      # WebSocket binary messages
        websocket.send(message)
    events = conn.receive_data(payload)      # one received binary message
    conn.acknowledge_received(sid, event.flow_controlled_length)  # when consumed

Peer misbehaviour never raises out of ``receive_data``: a stream error cancels the
stream (``StreamCancelled``), a connection error queues GOAWAY and returns
``ConnectionTerminated`` with the WebSocket close code to use, always as the last event
of its batch. Misuse of the API by the local application raises ``UsageError``.

The connection dispatches frames and keeps the connection's life (HELLO, GOAWAY,
keepalive); each concern it drives lives in a module of its own: ``streams`` (the stream
table, states and ``max_streams`` slots), ``assembly`` (fragments back into messages,
with early credit), ``windows`` (credit), ``scheduler`` (round-robin sending),
``limits`` (the abuse guards) and ``frames`` (the codec, and coalescing frames into
WebSocket messages).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import Any

from .assembly import MessageAssembler
from .constants import ErrorCode, Flag, FrameType, close_code_for
from .errors import (
    ConnectionClosedError,
    MessageTooLargeForPeer,
    ProtocolError,
    ProtocolTimeoutError,
    StreamLimitError,
    StreamStateError,
    UsageError,
)
from .events import (
    ConnectionTerminated,
    CreditGranted,
    Event,
    GoAwayReceived,
    HelloReceived,
    InvalidMessageReceived,
    LinkLost,
    PingAcknowledged,
    Resumed,
    StreamCancelled,
    message_received,
    stream_ended,
    stream_opened,
)
from .frames import (
    MESSAGE_OVERHEAD,
    Cancel,
    Credit,
    Data,
    Frame,
    GoAway,
    Hello,
    Open,
    Ping,
    coalesce,
    data_fields,
    decode_frame,
    encode_frame,
    unpack_message,
)
from .limits import Guards, Limits
from .message import InvalidMessage, decode_payload, encode_payload, pack
from .resume import (
    ACK_EVERY,
    MAX_UNACKED_BYTES,
    MAX_UNACKED_FRAMES,
    ReplayBuffer,
    ResumeHello,
)
from .scheduler import Scheduler
from .settings import MIN_FRAME_SIZE, MIN_WINDOW, Settings
from .state import AFTER_RECV_END, RECEIVING, Outcome, StreamInput, StreamState, transition
from .streams import Stream, StreamTable
from .windows import FlowControl

__all__ = ["Connection", "ConnectionState", "Role"]

#: Extra seconds of silence, beyond twice the ping interval, before the peer is dead.
DEAD_PEER_GRACE = 5.0

_DATA = int(FrameType.DATA)
_OPEN = int(FrameType.OPEN)
_CREDIT = int(FrameType.CREDIT)
_END = int(Flag.END)
_MORE = int(Flag.MORE)
_FLAG_END = Flag.END


class Role(enum.Enum):
    """Which side of the WebSocket this is: clients open odd streams, servers even."""

    CLIENT = "client"
    SERVER = "server"


class ConnectionState(enum.Enum):
    """The connection's life: OPEN, then GOING_AWAY after a graceful GOAWAY, then CLOSED."""

    OPEN = "open"
    GOING_AWAY = "going away"
    CLOSED = "closed"


# Hot-path names for enum members. Reached through its class, a member costs a call of
# the enum metaclass's __getattr__ hook on CPython 3.11 (some 900 instructions, against
# 250 for a global), and the paths below compare states several times per message.
_CLOSED = ConnectionState.CLOSED
_GOING_AWAY = ConnectionState.GOING_AWAY
_STREAM_CLOSED = StreamState.CLOSED
_STREAM_RESET = StreamState.RESET
_HALF_CLOSED_LOCAL = StreamState.HALF_CLOSED_LOCAL
_SEND_DATA = StreamInput.SEND_DATA
_SEND_END = StreamInput.SEND_END


class Connection:
    """One side of an mcp-ws v1 connection (see the module docstring)."""

    def __init__(
        self,
        role: Role,
        settings: Settings | None = None,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        auto_release: bool = True,
        resume: ResumeHello | None = None,
    ) -> None:
        """Create the connection and queue our HELLO, the first frame to send.

        ``auto_release=False`` keeps a peer-opened stream counted toward
        ``max_streams`` after it closes until ``release_stream`` is called (when its
        handler has finished).

        ``resume`` goes in our HELLO (docs/protocol.md section 9): a client offers
        resume with an empty ``ResumeHello()``; a server answers an offer with its
        token and grace. Resume is on when both HELLOs carry one.
        """
        self.role = role
        self.local_settings = settings or Settings()
        self.limits = limits or Limits()
        self._clock = clock
        now = clock()
        # Until the peer's HELLO, assume the smallest legal limits so that nothing we
        # pipeline can exceed what the peer allows; the HELLO then raises them.
        self.peer_settings = Settings(
            initial_window=MIN_WINDOW, connection_window=MIN_WINDOW, max_frame_size=MIN_FRAME_SIZE
        )
        self.peer_hello_received = False
        self.state = ConnectionState.OPEN
        self.close_code: int | None = None
        self.error_code: ErrorCode | None = None
        self.rtt: float | None = None

        self._streams = StreamTable(
            local_parity=1 if role is Role.CLIENT else 0,
            auto_release=auto_release,
            remember=self.limits.recently_closed,
        )
        self._flow = FlowControl(  # the windows of the live streams, and the connection's
            self._streams.live,
            local_initial_window=self.local_settings.initial_window,
            local_connection_window=self.local_settings.connection_window,
            peer_initial_window=self.peer_settings.initial_window,
            peer_connection_window=self.peer_settings.connection_window,
        )
        self._scheduler = Scheduler()
        self._assembly = MessageAssembler(
            max_message_size=self.local_settings.max_message_size,
            budget=self.local_settings.reassembly_budget,
        )
        self._guards = Guards(self.limits, clock)
        self._held = 0  # bytes of delivered messages not yet acknowledged (all streams)
        self._goaway_sent = False
        self._goaway_received = False

        self._immediate: list[bytes] = []  # control frames, OPENs, whole last messages
        self._pings: dict[int, float] = {}
        self._ping_counter = 0
        self._keepalive_ping_sent = False
        self.timer_epoch = 0
        """Moves each time `next_deadline` may have moved *earlier* (the peer's HELLO, or
        traffic after a keepalive PING): the I/O layer re-reads the deadline only then."""
        self._created = now
        self._last_received = now
        self._hello_sent = False
        # Resume (section 9). Frames are numbered from the start when we offer it, and
        # forgotten if the peer does not take it up.
        self._resume_offer = resume
        self._negotiated = False  # both HELLOs carried a resume map
        self._replay: ReplayBuffer | None = ReplayBuffer() if resume is not None else None
        self._received = 0  # frames received after the peer's HELLO (when negotiated)
        self._position_sent = 0  # the last position we told the peer
        self.resume_token: str | None = resume.token if resume is not None else None
        """The token to resume with (the server's, from its latest HELLO)."""
        self.resume_grace: int | None = resume.grace if resume is not None else None
        """Seconds the server keeps a detached session (from its HELLO)."""
        self.resume_node: str | None = resume.node if resume is not None else None
        """The server's name for itself, where a resume must go (from its HELLO)."""
        self.resume_worker: str | None = resume.worker if resume is not None else None
        """Which of the server's worker processes holds the connection (from its HELLO)."""
        self.suspended = False
        """The link is gone and the connection waits to resume (`suspend`)."""
        self._awaiting_resume = False  # a client's resume HELLO is out, the answer is not
        self._link_out: list[bytes] = []  # a new link's HELLO and the frames sent again
        hello = self.local_settings.to_wire()
        if resume is not None:
            hello["resume"] = resume.to_wire()
        self._immediate.append(encode_frame(Hello(settings=hello)))

    # ------------------------------------------------------------------ queries

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (GOAWAY with an error, either way)."""
        return self.state is _CLOSED

    @property
    def resumable(self) -> bool:
        """Whether a lost link can be resumed: both sides agreed to resume, we still hold
        every frame the peer has not acknowledged, and the connection is not over."""
        return (
            self._negotiated
            and self._replay is not None
            and self.state is not _CLOSED
            and self.resume_token is not None
        )

    @property
    def replay_buffered(self) -> int:
        """Bytes of frames kept for the peer until it acknowledges them (section 9)."""
        return self._replay.bytes if self._replay is not None else 0

    @property
    def received_position(self) -> int:
        """Frames received from the peer since its HELLO (counted with resume on)."""
        return self._received

    @property
    def open_stream_count(self) -> int:
        """Streams (other than 0) that are neither closed nor reset."""
        return len(self._streams)

    def stream_state(self, stream_id: int) -> StreamState | None:
        """The state of a live stream; ``None`` once it is finished or unknown."""
        stream = self._streams.get(stream_id)
        return stream.state if stream else None

    def available_credit(self, stream_id: int) -> int:
        """Bytes that could go out on ``stream_id`` now (queued data counts as spent)."""
        return max(self._flow.available_credit(stream_id) - self._scheduler.buffered(stream_id), 0)

    def buffered(self, stream_id: int | None = None) -> int:
        """Bytes queued for sending and not yet framed (one stream, or all)."""
        return self._scheduler.buffered(stream_id)

    @property
    def buffered_received(self) -> int:
        """Bytes received and held for the application: delivered messages it has not
        acknowledged, plus fragments of incomplete messages. Never above
        ``local_settings.receive_memory_bound``."""
        return self._held + self._assembly.buffered

    @property
    def stream_limit(self) -> int:
        """How many streams of ours may hold a slot at once: the peer's ``max_streams``,
        and our own, which bounds the memory their windows can take."""
        return min(self.peer_settings.max_streams, self.local_settings.max_streams)

    @property
    def stream_slots(self) -> int:
        """How many more streams ``open_stream`` would accept now (0 when closing)."""
        if self.state is _CLOSED or self._goaway_received:
            return 0
        return max(self.stream_limit - len(self._streams.local_active), 0)

    @property
    def can_open_stream(self) -> bool:
        """Whether ``open_stream`` would succeed now (``max_streams`` and shutdown)."""
        return self.stream_slots > 0

    @property
    def is_finished(self) -> bool:
        """True when the I/O layer should close the WebSocket: the connection failed, or
        a graceful GOAWAY went either way and every stream is done."""
        if self.state is _CLOSED:
            return True
        return self.state is _GOING_AWAY and self.open_stream_count == 0

    @property
    def has_data_to_send(self) -> bool:
        """Whether `data_to_send` may return something now (frames queued for the peer)."""
        if self.suspended:
            return bool(self._link_out)
        return bool(self._immediate or self._link_out) or (
            self.state is not _CLOSED and self._scheduler.has_pending()
        )

    def output_due(self) -> bool:
        """``has_data_to_send or is_finished`` in one call: whether the I/O layer must
        wake its writer after a received message (a reply to send, or the close)."""
        state = self.state
        if self.suspended:
            return bool(self._link_out)
        if state is _CLOSED or self._immediate or self._link_out:
            return True
        if self._scheduler.has_pending():
            return True
        return state is _GOING_AWAY and not len(self._streams)

    # ------------------------------------------------------------------ sending

    def open_stream(self, message: Mapping[str, Any], *, end: bool = False) -> int:
        """Open a new stream carrying ``message`` in its OPEN frame; returns its id."""
        self._check_open()
        if self._goaway_received:
            raise StreamStateError("the peer sent GOAWAY: no new streams on this connection")
        if len(self._streams.local_active) >= self.stream_limit:
            raise StreamLimitError(
                f"{len(self._streams.local_active)} streams hold a slot, the limit is "
                f"{self.stream_limit} (max_streams: the peer's "
                f"{self.peer_settings.max_streams}, ours {self.local_settings.max_streams})"
            )
        payload = self._encode(message)
        stream = self._streams.open_local()
        sid = stream.id
        self._flow.add_stream(stream)
        if end:
            stream.state = _HALF_CLOSED_LOCAL
        # The OPEN goes out now, in id order, with as much of the message as credit allows.
        size = len(payload)
        first = min(size, self.peer_settings.max_frame_size, self._flow.available_credit(sid))
        self._flow.consume_send(sid, first)
        if first == size:
            self._immediate.append(pack((_OPEN, sid, _END if end else 0, payload)))
        else:
            self._immediate.append(pack((_OPEN, sid, _MORE, payload[:first])))
            self._scheduler.push(sid, memoryview(payload)[first:], end=end)
        return sid

    def send_message(
        self, stream_id: int, message: Mapping[str, Any], *, end: bool = False
    ) -> None:
        """Queue one message on a stream (0: the session stream); ``end`` sends END after it."""
        self._check_open()
        if stream_id == 0:
            if end:
                raise StreamStateError("stream 0 cannot be ended")
            self._scheduler.push(0, self._encode(message), end=False)
            return
        stream = self._sending_on(stream_id)
        if end:
            next_state = stream.after_sending(_SEND_DATA, _SEND_END)
        else:
            next_state = stream.after_sending(_SEND_DATA)
        payload = self._encode(message)
        if end and not self.suspended and self._fits_whole(stream_id, len(payload)):
            # The last message, whole within credit: it goes out now, as an OPEN does.
            self._flow.consume_send(stream_id, len(payload))
            self._immediate.append(pack((_DATA, stream_id, _END, payload)))
        else:
            self._scheduler.push(stream_id, payload, end=end)
        self._enter(stream, next_state)

    def _fits_whole(self, stream_id: int, size: int) -> bool:
        """Whether a message of ``size`` bytes can go out on ``stream_id`` now in one
        frame: nothing is queued before it there, and credit covers it."""
        return (
            not self._scheduler.has_queued(stream_id)
            and size <= self.peer_settings.max_frame_size
            and size <= self._flow.available_credit(stream_id)
        )

    def end_stream(self, stream_id: int) -> None:
        """Send END on a stream without a message (after whatever is queued on it)."""
        self._check_open()
        if stream_id == 0:
            raise StreamStateError("stream 0 cannot be ended")
        next_state = (stream := self._sending_on(stream_id)).after_sending(StreamInput.SEND_END)
        self._scheduler.push(stream_id, b"", end=True)
        self._enter(stream, next_state)

    def cancel_stream(
        self, stream_id: int, error_code: ErrorCode = ErrorCode.CANCELLED, reason: str = ""
    ) -> None:
        """Reset a stream: CANCEL goes out ahead of data, queued data is discarded.

        Cancelling a finished or unknown stream does nothing.
        """
        if stream_id == 0:
            raise StreamStateError("stream 0 cannot be cancelled")
        stream = self._streams.get(stream_id)
        if stream is None or self.state is _CLOSED:
            return
        outcome, _ = transition(stream.state, StreamInput.SEND_CANCEL)
        if outcome is Outcome.OK:
            self._reset(stream, error_code, reason)

    def acknowledge_received(self, stream_id: int, size: int) -> bool:
        """The application consumed ``size`` bytes of messages from ``stream_id``.

        This returns credit to the peer (batched); pass each ``MessageReceived``'s
        ``flow_controlled_length``. Acknowledging a reset or forgotten stream does nothing.
        Returns whether a CREDIT frame was queued (so the writer has something to send).
        """
        if size < 0:
            raise UsageError("size must not be negative")
        stream = self._streams.find(stream_id)
        if stream is None or self.state is _CLOSED:
            return False
        if size > stream.unacked:
            raise UsageError(
                f"acknowledging {size} bytes on stream {stream_id}, only {stream.unacked} delivered"
            )
        self._held -= size
        early = stream.consumed(size)
        if early:
            self._assembly.settle(early)
        grants = self._flow.acknowledge_received(stream_id, size - early)
        if grants:
            self._grant(grants)
        if stream.unacked == 0:
            self._streams.consumed_all(stream)
        return bool(grants)

    def release_stream(self, stream_id: int) -> None:
        """Free a peer-opened stream's ``max_streams`` slot (with ``auto_release=False``)."""
        self._streams.release(stream_id)

    def ping(self) -> int:
        """Send a PING; its ACK arrives as ``PingAcknowledged`` with the RTT."""
        self._check_open()
        self._ping_counter += 1
        opaque = self._ping_counter
        self._pings[opaque] = self._clock()
        self._immediate.append(encode_frame(Ping(opaque=opaque, received=self._position())))
        return opaque

    def close(self, error_code: ErrorCode = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Send GOAWAY. With NO_ERROR open streams finish (``is_finished`` tells when to
        close the WebSocket); with an error code the connection is closed at once."""
        if self.state is _CLOSED:
            return
        if error_code is ErrorCode.NO_ERROR:
            if not self._goaway_sent:
                self._goaway_sent = True
                self.state = ConnectionState.GOING_AWAY
                self._immediate.append(
                    encode_frame(
                        GoAway(
                            last_stream_id=self._streams.highest_remote, error_code=0, reason=reason
                        )
                    )
                )
            return
        self._terminate(error_code, reason, remote=False)

    def data_to_send(self) -> list[bytes]:
        """WebSocket binary messages to send now: control frames (and OPENs, and last
        messages sent whole) first, then queued data round-robin within credit,
        coalesced up to the peer's message size limit."""
        if self.suspended:  # nothing but a new link's HELLO (a client's resume)
            out, self._link_out = self._link_out, []
            return out
        frames = self._immediate
        self._immediate = []
        hello_first = not self._hello_sent
        self._hello_sent = True
        self._guards.replies_sent()
        if self.state is not _CLOSED and self._scheduler.has_pending():
            for sid, flags, payload in self._scheduler.pop_frames(
                self._flow.available_credit,
                self._flow.consume_send,
                self.peer_settings.max_frame_size,
            ):
                frames.append(pack((_DATA, sid, int(flags), payload)))
                if flags is _FLAG_END:
                    stream = self._streams.get(sid)
                    if stream is not None and stream.state is _STREAM_CLOSED:
                        self._finish(stream)  # its END is on the wire at last
        replay = self._replay
        if replay is not None and frames and self.state is not _CLOSED:
            replay.add(frames[1:] if hello_first else frames)
            if len(replay) > MAX_UNACKED_FRAMES or replay.bytes > MAX_UNACKED_BYTES:
                self._give_up_resume()
        if self._link_out:  # a new link: its HELLO, then the frames sent again
            frames = [*self._link_out, *frames]  # (a new list: the replay keeps that one)
            self._link_out = []
        if len(frames) > 1:
            frames = coalesce(frames, self.peer_settings.max_frame_size + MESSAGE_OVERHEAD)
        return frames

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (clock time), or ``None``."""
        if self.state is _CLOSED or self.suspended:
            return None
        if not self.peer_hello_received:
            return self._created + self.limits.hello_timeout
        interval = self.local_settings.ping_interval
        if not interval:
            return None
        if self._keepalive_ping_sent:
            return self._last_received + 2 * interval + DEAD_PEER_GRACE
        return self._last_received + interval

    def tick(self, now: float | None = None) -> list[Event]:
        """Run the timers: HELLO timeout, keepalive PING, dead-peer detection."""
        if self.state is _CLOSED or self.suspended:
            return []
        now = self._clock() if now is None else now
        if not self.peer_hello_received:
            if now - self._created >= self.limits.hello_timeout:
                return [self._fail(ProtocolTimeoutError("no HELLO from the peer in time"))]
            return []
        interval = self.local_settings.ping_interval
        if not interval:
            return []
        silence = now - self._last_received
        if silence >= 2 * interval + DEAD_PEER_GRACE:
            if self.resumable:
                self.suspend()
                return [LinkLost(reason=f"peer silent for {silence:.1f} s")]
            return [self._fail(ProtocolTimeoutError(f"peer silent for {silence:.1f} s"))]
        if silence >= interval and not self._keepalive_ping_sent:
            self._keepalive_ping_sent = True
            self.ping()
        return []

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> list[Event]:
        """Process one WebSocket binary message from the peer."""
        if self.state is _CLOSED:
            return []
        self._last_received = self._clock()
        if self._keepalive_ping_sent:
            self._keepalive_ping_sent = False
            self.timer_epoch += 1  # the next PING is due an interval from now
        events: list[Event] = []
        limit = self.local_settings.max_frame_size
        try:
            for raw in unpack_message(data, limit):
                # DATA and OPEN, almost all traffic, go straight to their handlers.
                if not self.peer_hello_received:
                    self._handle(decode_frame(raw, limit), events)
                elif (fields := data_fields(raw, limit)) is None:
                    frame = decode_frame(raw, limit)
                    if self._negotiated:
                        self._received += 1  # a well-formed frame's position (section 9)
                    self._handle(frame, events)
                else:
                    if self._negotiated:
                        self._received += 1
                    if fields[0] == _DATA:
                        self._on_data(fields[1], fields[2], fields[3], events)
                    else:
                        self._on_open(fields[1], fields[2], fields[3], events)
                if self.state is _CLOSED:
                    break
        except ProtocolError as exc:
            events.append(self._fail(exc))
        if (
            self._negotiated
            and self._received - self._position_sent >= ACK_EVERY
            and self.state is not _CLOSED
            and not self.suspended
        ):
            self._immediate.append(pack((_CREDIT, 0, 0, 0, self._position())))
        return events

    def receive_text(self) -> list[Event]:
        """A text message arrived, which mcp-ws.v1 forbids: the connection ends (1003)."""
        if self.state is _CLOSED:
            return []
        return [self._fail(ProtocolError("text message on mcp-ws.v1"), close_code=1003)]

    def connection_lost(self, reason: str = "the connection was lost") -> list[Event]:
        """The WebSocket ended without an error GOAWAY.

        After a graceful GOAWAY (either way) with every stream done, that is the normal
        end: NO_ERROR, close code 1000, reason "closed after GOAWAY". Otherwise every
        stream fails at once: INTERNAL_ERROR, close code 1006, with ``reason``
        (docs/protocol.md, refinement 9). Returns ``[ConnectionTerminated]``
        (``remote=True``) unless the connection had already ended.
        """
        if self.state is _CLOSED:
            return []
        events: list[Event] = []
        if self.is_finished:
            self._terminate(
                ErrorCode.NO_ERROR,
                "closed after GOAWAY",
                remote=True,
                events=events,
                close_code=1000,
            )
        else:
            self._terminate(
                ErrorCode.INTERNAL_ERROR,
                reason,
                remote=True,
                events=events,
                close_code=1006,
                session_lost=self._negotiated,
            )
        return events

    # ------------------------------------------------------------------ resume

    def suspend(self) -> None:
        """The link (WebSocket) is gone but the connection can resume (`resumable`):
        keep every stream, queue what is sent meanwhile, send nothing, run no timer.
        Next: `begin_resume` (a client) or `resume_accepted` (a server), on a new link;
        or `connection_lost` when that is not to be."""
        if not self.resumable:
            raise UsageError("this connection cannot resume")
        self.suspended = True
        self._awaiting_resume = False
        self._link_out = []

    def begin_resume(self) -> None:
        """A client on a new link: queue the HELLO that asks to resume (the only thing
        `data_to_send` returns until the server's answer, which `receive_data` takes
        first: `Resumed`, or `ConnectionTerminated` with ``session_lost`` if refused)."""
        if self.role is not Role.CLIENT or not self.suspended or self.resume_token is None:
            raise UsageError("begin_resume is for a suspended client connection")
        ask = ResumeHello(token=self.resume_token, received=self._received)
        self._link_out = [self._hello_frame(ask)]
        self._awaiting_resume = True
        self.peer_hello_received = False  # the server's HELLO comes first again

    def resume_accepted(self, received: int, *, token: str, grace: int | None = None) -> None:
        """A server on a new link whose client asked to resume with ``received`` (its
        position): answer with our HELLO (the new ``token``, our position), send again
        what the client has not received, and go on. A position outside what we sent
        raises ``ProtocolError`` (refuse the resume)."""
        if self.role is not Role.SERVER or not self.suspended or self._replay is None:
            raise UsageError("resume_accepted is for a suspended server connection")
        self._replay.acknowledge(received)
        self.resume_token = token
        if grace is not None:
            self.resume_grace = grace
        answer = ResumeHello(
            token=token,
            grace=self.resume_grace,
            node=self.resume_node,
            worker=self.resume_worker,
            received=self._received,
        )
        self._relink([self._hello_frame(answer), *self._replay.unacknowledged()])

    def _relink(self, out: list[bytes]) -> None:
        """The new link is up: ``out`` goes first, then everything queued meanwhile."""
        self.suspended = False
        self._awaiting_resume = False
        self._link_out = out
        self._last_received = self._clock()
        self._keepalive_ping_sent = False
        self.timer_epoch += 1
        self._scheduler.wake_all()

    def _hello_frame(self, resume: ResumeHello) -> bytes:
        hello = self.local_settings.to_wire()
        hello["resume"] = resume.to_wire()
        return encode_frame(Hello(settings=hello))

    def _position(self) -> int | None:
        """Our position for the peer (on CREDIT and PING), when resume is on."""
        if not self._negotiated:
            return None
        self._position_sent = self._received
        return self._received

    def _acknowledged(self, received: object) -> None:
        """The peer's position, from a CREDIT or PING (ignored without resume)."""
        if not self._negotiated or received is None:
            return
        if type(received) is not int:
            raise ProtocolError(f"position must be an integer, got {received!r}")
        if self._replay is not None:
            self._replay.acknowledge(received)

    def _give_up_resume(self) -> None:
        """The peer lets too many frames go unacknowledged: keep none (no resume)."""
        if self._replay is not None:
            self._replay.clear()
        self._replay = None

    def _handle(self, frame: Frame, events: list[Event]) -> None:
        if not self.peer_hello_received:
            if type(frame) is not Hello:
                raise ProtocolError("the first frame must be HELLO")
            self._on_hello(frame, events)
            return
        match frame:
            case Data():
                self._on_data(frame.stream_id, frame.flags, frame.payload, events)
            case Open():
                self._on_open(frame.stream_id, frame.flags, frame.payload, events)
            case Credit():
                self._on_credit(frame, events)
            case Cancel():
                self._on_cancel(frame, events)
            case Ping():
                self._on_ping(frame, events)
            case GoAway():
                self._on_goaway(frame, events)
            case Hello():
                raise ProtocolError("second HELLO")
            case _:
                self._guards.useless("frame of unknown type")

    def _on_hello(self, frame: Hello, events: list[Event]) -> None:
        resume = ResumeHello.from_settings(frame.settings)
        if self._awaiting_resume:
            self._on_resume_answer(resume, events)
            return
        settings = Settings.from_wire(frame.settings)
        if self._resume_offer is not None:
            if resume is not None and (self.role is Role.SERVER or resume.token is not None):
                self._negotiated = True
                if self.role is Role.CLIENT:
                    self.resume_token = resume.token
                    self.resume_grace = resume.grace
                    self.resume_node = resume.node
                    self.resume_worker = resume.worker
            else:
                self._replay = None  # the peer does not resume: number nothing
        self.peer_hello_received = True
        self.timer_epoch += 1  # no HELLO timeout any more: the keepalive interval
        self.peer_settings = settings
        self._flow.peer_settings_changed(settings.initial_window, settings.connection_window)
        self._scheduler.wake_all()
        events.append(HelloReceived(settings=settings))

    def _on_resume_answer(self, resume: ResumeHello | None, events: list[Event]) -> None:
        """The server's HELLO on a link where we asked to resume."""
        self.peer_hello_received = True
        if resume is None or resume.refused is not None or resume.received is None:
            why = resume.refused if resume is not None and resume.refused else "not resumable"
            self.suspended = False
            self._terminate(
                ErrorCode.NO_ERROR,
                f"resume refused: {why}",
                remote=True,
                events=events,
                close_code=1000,
                session_lost=True,
            )
            return
        assert self._replay is not None
        self._replay.acknowledge(resume.received)
        if resume.token is not None:
            self.resume_token = resume.token
        if resume.grace is not None:
            self.resume_grace = resume.grace
        resent = self._replay.unacknowledged()
        self._relink(resent)
        events.append(Resumed(resent=len(resent)))

    def _on_open(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        streams = self._streams
        streams.check_remote_id(sid)
        size = len(payload)
        refuse = self._goaway_sent or len(streams.remote_active) >= self.local_settings.max_streams
        if refuse:
            # Not started: the bytes count and are credited straight back.
            self._grant(self._flow.dropped_received(size))
            streams.remember_closed(sid)
            self._guards.cancel()
            self._reply(
                Cancel(stream_id=sid, error_code=ErrorCode.REFUSED_STREAM, reason="refused")
            )
            return
        self._flow.add_stream(streams.open_remote(sid))
        events.append(stream_opened(sid))
        self._on_data(sid, flags, payload, events)

    def _on_data(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        """DATA (or OPEN's part of it): ``flags`` as an int, of which END and MORE count."""
        size = len(payload)
        stream = self._streams.live.get(sid)
        if stream is None:
            self._streams.check_known(sid)
            self._grant(self._flow.dropped_received(size))
            if not self._streams.recently_closed(sid):
                self._guards.useless(f"DATA for forgotten stream {sid}")
            return
        end = flags & 1
        if sid == 0 and end:
            raise ProtocolError("END on stream 0")
        more = flags & 2
        if size or more or stream.partial is not None:
            if stream.state not in RECEIVING:
                outcome, _ = transition(stream.state, StreamInput.RECV_DATA)
                self._grant(self._flow.dropped_received(size))
                if outcome is Outcome.STREAM_CLOSED:
                    self._stream_error(stream, ErrorCode.STREAM_CLOSED, "DATA after END", events)
                return
            grants = self._flow.data_received(sid, size)
            if grants:
                self._grant(grants)
            if more or stream.partial is not None or stream.discarding:
                self._receive_fragment(stream, payload, bool(more), events)
            else:
                self._deliver(stream, payload, 0, events)  # a whole message in one frame
            if stream.state is _STREAM_RESET:
                return
        elif not end:
            self._guards.useless("empty DATA frame")
            return
        if end:
            after = AFTER_RECV_END.get(stream.state)
            if after is None:
                outcome, _ = transition(stream.state, StreamInput.RECV_END)
                if outcome is Outcome.STREAM_CLOSED:
                    self._stream_error(stream, ErrorCode.STREAM_CLOSED, "END after END", events)
                return
            if stream.partial is not None:
                self._stream_error(
                    stream, ErrorCode.PROTOCOL_ERROR, "END inside a fragmented message", events
                )
                return
            stream.state = after
            self._streams.free_slot_if_done(stream)
            events.append(stream_ended(sid))
            if after is _STREAM_CLOSED:
                self._finish(stream)

    def _receive_fragment(
        self, stream: Stream, payload: bytes, more: bool, events: list[Event]
    ) -> None:
        if stream.discarding:
            stream.discarding = more
            self._grant(self._flow.acknowledge_received(0, len(payload)))
            return
        assembly = self._assembly
        too_much = assembly.add(stream, payload)
        if too_much is not None:
            self._message_too_large(stream, too_much, events)
            return
        if more:
            # Credit incomplete fragments back now, within a connection-wide budget,
            # so a message larger than a window can finish.
            if assembly.credit_early(stream, len(payload)):
                self._grant(self._flow.acknowledge_received(stream.id, len(payload)))
            return
        body, early = assembly.complete(stream)
        self._deliver(stream, body, early, events)

    def _deliver(self, stream: Stream, body: bytes, early: int, events: list[Event]) -> None:
        """A whole message arrived on ``stream`` (``early`` of its bytes credited back)."""
        try:
            message = decode_payload(body)
        except InvalidMessage as exc:
            self._assembly.settle(early)
            if stream.id == 0:
                # Its bytes will never be consumed: credit back what was not credited yet.
                self._grant(self._flow.acknowledge_received(0, len(body) - early))
                events.append(InvalidMessageReceived(stream_id=0, reason=str(exc)))
            else:
                self._stream_error(stream, ErrorCode.PROTOCOL_ERROR, str(exc), events)
            return
        size = len(body)
        stream.delivered(size, early)
        self._held += size
        events.append(message_received(stream.id, message, size))

    def _message_too_large(self, stream: Stream, reason: str, events: list[Event]) -> None:
        if stream.id != 0:
            self._stream_error(stream, ErrorCode.MESSAGE_TOO_LARGE, reason, events)
            return
        # Stream 0 cannot be cancelled: drop this message, and its later fragments.
        self._drop_partial(stream)
        stream.discarding = True
        events.append(InvalidMessageReceived(stream_id=0, reason=reason))

    def _on_credit(self, frame: Credit, events: list[Event]) -> None:
        sid = frame.stream_id
        self._acknowledged(frame.received)
        if frame.increment == 0:
            if sid == 0 and self._negotiated and frame.received is not None:
                return  # an acknowledgement only (section 9)
            raise ProtocolError(f"CREDIT of 0 on stream {sid}", stream_id=sid)
        if sid:
            self._streams.check_known(sid)
        if self._flow.credit_received(sid, frame.increment):
            if sid:
                self._scheduler.wake(sid)
            else:
                self._scheduler.wake_all()
            events.append(CreditGranted(stream_id=sid, increment=frame.increment))
        elif not self._streams.recently_closed(sid):
            self._guards.useless(f"CREDIT for forgotten stream {sid}")

    def _on_cancel(self, frame: Cancel, events: list[Event]) -> None:
        sid = frame.stream_id
        self._streams.check_known(sid)
        stream = self._streams.get(sid)
        if stream is None:
            if not self._streams.recently_closed(sid):
                self._guards.useless(f"CANCEL for forgotten stream {sid}")
            return
        if not stream.local:
            self._guards.cancel()
        code = ErrorCode.parse(frame.error_code)
        self._reset(stream, code, frame.reason, send=False)
        events.append(
            StreamCancelled(stream_id=sid, error_code=code, reason=frame.reason, remote=True)
        )

    def _on_ping(self, frame: Ping, events: list[Event]) -> None:
        self._acknowledged(frame.received)
        if frame.ack:
            sent = self._pings.pop(frame.opaque, None)
            if sent is None:
                self._guards.useless("PING ACK for no PING of ours")
                return
            self.rtt = self._clock() - sent
            events.append(PingAcknowledged(opaque=frame.opaque, rtt=self.rtt))
            return
        self._guards.ping()
        self._reply(Ping(opaque=frame.opaque, ack=True, received=self._position()))

    def _on_goaway(self, frame: GoAway, events: list[Event]) -> None:
        code = ErrorCode.parse(frame.error_code)
        if code is not ErrorCode.NO_ERROR:
            self._terminate(code, frame.reason, remote=True, events=events)
            return
        self._goaway_received = True
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.GOING_AWAY
        events.append(GoAwayReceived(last_stream_id=frame.last_stream_id, reason=frame.reason))
        for stream in [
            s for s in self._streams.live.values() if s.local and s.id > frame.last_stream_id
        ]:
            self._reset(stream, ErrorCode.REFUSED_STREAM, "not processed", send=False)
            events.append(
                StreamCancelled(
                    stream_id=stream.id,
                    error_code=ErrorCode.REFUSED_STREAM,
                    reason="the peer went away before processing it (safe to retry)",
                    remote=True,
                )
            )

    # ------------------------------------------------------------------ internals

    def _encode(self, message: Mapping[str, Any]) -> bytes:
        payload = encode_payload(message)
        if len(payload) > self.peer_settings.max_message_size:
            raise MessageTooLargeForPeer(
                f"message of {len(payload)} bytes, the peer's max_message_size is "
                f"{self.peer_settings.max_message_size}"
            )
        return payload

    def _check_open(self) -> None:
        if self.state is _CLOSED:
            raise ConnectionClosedError(
                "connection closed", error_code=self.error_code or ErrorCode.NO_ERROR
            )

    def _sending_on(self, sid: int) -> Stream:
        stream = self._streams.get(sid)
        if stream is None:
            raise StreamStateError(f"stream {sid} is not open")
        return stream

    def _enter(self, stream: Stream, state: StreamState) -> None:
        stream.state = state
        if state is _STREAM_CLOSED:
            self._finish(stream)

    def _grant(self, grants: list[tuple[int, int]]) -> None:
        if self._negotiated:  # each CREDIT carries our position (section 9)
            for sid, increment in grants:
                self._immediate.append(pack((_CREDIT, sid, 0, increment, self._position())))
            return
        for sid, increment in grants:
            self._immediate.append(pack((_CREDIT, sid, 0, increment)))

    def _reply(self, frame: Frame) -> None:
        self._guards.reply()
        self._immediate.append(encode_frame(frame))

    def _drop_partial(self, stream: Stream) -> None:
        """Discard a half-reassembled message (on stream 0, crediting back the withheld
        part: other streams' bytes refilled the connection window on receipt)."""
        withheld = self._assembly.drop(stream)
        if stream.id == 0 and withheld:
            self._grant(self._flow.acknowledge_received(0, withheld))

    def _finish(self, stream: Stream) -> None:
        """A stream leaves the table: reset, or closed with our END sent."""
        if stream.state is _STREAM_CLOSED and self._scheduler.has_queued(stream.id):
            return  # data_to_send finishes it when the queued END goes out
        self._streams.finish(stream)  # its windows go with it

    def _reset(self, stream: Stream, code: ErrorCode, reason: str, *, send: bool = True) -> None:
        stream.state = StreamState.RESET
        if send:
            self._immediate.append(
                encode_frame(Cancel(stream_id=stream.id, error_code=code, reason=reason))
            )
        self._scheduler.drop(stream.id)
        # What the application will now never acknowledge stops counting (its bytes
        # refilled the connection window when they arrived).
        self._drop_partial(stream)
        unacked, early = stream.abandon()
        self._assembly.settle(early)
        self._held -= unacked
        self._finish(stream)

    def _stream_error(
        self, stream: Stream, code: ErrorCode, reason: str, events: list[Event]
    ) -> None:
        if not stream.local:
            self._guards.cancel()
        self._reset(stream, code, reason)
        events.append(
            StreamCancelled(stream_id=stream.id, error_code=code, reason=reason, remote=False)
        )

    def _fail(self, error: ProtocolError, *, close_code: int | None = None) -> ConnectionTerminated:
        events: list[Event] = []
        self._terminate(
            error.error_code,
            error.message,
            remote=False,
            events=events,
            error=error,
            close_code=close_code,
        )
        event = events[0]
        assert isinstance(event, ConnectionTerminated)
        return event

    def _terminate(
        self,
        code: ErrorCode,
        reason: str,
        *,
        remote: bool,
        events: list[Event] | None = None,
        error: ProtocolError | None = None,
        close_code: int | None = None,
        session_lost: bool = False,
    ) -> None:
        self.suspended = False
        self._link_out = []
        if self._replay is not None:
            self._replay.clear()
        if close_code is not None:
            self._immediate = []  # a close code of its own (1003) needs no GOAWAY
        elif not remote:
            # Nothing else matters now: the GOAWAY is the last frame we send (after our
            # HELLO, if that has not gone out yet: it must be the first frame).
            self._immediate = self._immediate[:1] if not self._hello_sent else []
            self._immediate.append(
                encode_frame(
                    GoAway(
                        last_stream_id=self._streams.highest_remote, error_code=code, reason=reason
                    )
                )
            )
        else:
            self._immediate = []
        self.state = ConnectionState.CLOSED
        self.error_code = code
        self.close_code = close_code or close_code_for(code)
        for sid in list(self._streams.live):  # nothing queued is sent now, stream 0's too
            self._scheduler.drop(sid)
        if events is not None:
            events.append(
                ConnectionTerminated(
                    error_code=code,
                    reason=reason,
                    last_stream_id=self._streams.highest_remote,
                    remote=remote,
                    close_code=self.close_code,
                    error=error,
                    session_lost=session_lost,
                )
            )
