"""Resume in the sans-I/O core (docs/protocol.md section 9): negotiation, positions,
the replay buffer and its bound, links cut at random, refusals, bad positions."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import msgpack
import pytest

from mcp_ws.protocol import (
    Connection,
    ConnectionTerminated,
    ErrorCode,
    Event,
    MessageReceived,
    Role,
    Settings,
)
from mcp_ws.protocol.events import LinkLost, Resumed
from mcp_ws.protocol.resume import (
    ACK_EVERY,
    MAX_UNACKED_FRAMES,
    ResumeHello,
    refusal,
    resume_request,
)

from ..helpers import FakeClock, frames_of, notification, request, result

pytestmark = pytest.mark.timeout(60)


def pair(
    clock: FakeClock | None = None,
    *,
    client_offer: bool = True,
    server_offer: bool = True,
    settings: Settings | None = None,
) -> tuple[Connection, Connection]:
    clock = clock or FakeClock()
    client = Connection(
        Role.CLIENT, settings, clock=clock, resume=ResumeHello() if client_offer else None
    )
    grant = ResumeHello(token="t0", grace=60, node="n1") if server_offer else None
    server = Connection(Role.SERVER, settings, clock=clock, resume=grant)
    return client, server


def exchange(a: Connection, b: Connection, rounds: int = 100) -> tuple[list[Event], list[Event]]:
    """Move bytes both ways until quiet; return the events (a's, b's)."""
    a_events: list[Event] = []
    b_events: list[Event] = []
    for _ in range(rounds):
        moved = False
        for m in a.data_to_send():
            moved = True
            b_events += b.receive_data(m)
        for m in b.data_to_send():
            moved = True
            a_events += a.receive_data(m)
        if not moved:
            return a_events, b_events
    raise AssertionError("no quiet")


def test_negotiated_when_both_offer() -> None:
    client, server = pair()
    exchange(client, server)
    assert client.resumable
    assert server.resumable
    assert (client.resume_token, client.resume_grace, client.resume_node) == ("t0", 60, "n1")
    first = msgpack.unpackb(Connection(Role.CLIENT, resume=ResumeHello()).data_to_send()[0])
    assert first[3]["resume"] == {}


@pytest.mark.parametrize(("client_offer", "server_offer"), [(True, False), (False, True)])
def test_off_unless_both_offer(client_offer: bool, server_offer: bool) -> None:
    client, server = pair(client_offer=client_offer, server_offer=server_offer)
    sid = client.open_stream(request(1), end=True)
    exchange(client, server)
    server.send_message(sid, result(1), end=True)
    exchange(client, server)
    assert not client.resumable
    assert not server.resumable
    assert client.replay_buffered == server.replay_buffered == 0
    # Without resume, a CREDIT of 0 is still a PROTOCOL_ERROR.
    events = server.receive_data(msgpack.packb([4, 0, 0, 0, 5]))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.PROTOCOL_ERROR


def test_credit_and_ping_carry_the_position() -> None:
    client, server = pair(settings=Settings(initial_window=16384))
    exchange(client, server)
    sid = client.open_stream(request(1), end=True)
    exchange(client, server)
    for i in range(8):
        server.send_message(sid, notification(n=i, pad="x" * 3000))
    for m in server.data_to_send():
        for e in client.receive_data(m):
            if isinstance(e, MessageReceived):
                client.acknowledge_received(e.stream_id, e.flow_controlled_length)
    client.ping()
    wire = [f for m in client.data_to_send() for f in _frames(m)]
    pings = [f for f in wire if f[0] == 5]
    credits = [f for f in wire if f[0] == 4]
    assert pings
    assert pings[-1][4] == client.received_position > 0
    assert credits
    assert all(len(f) == 5 and f[4] <= client.received_position for f in credits)


def _frames(message: bytes) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(message)
    return list(unpacker)


def _sent_frames(a: Connection, b: Connection) -> list[Any]:
    """Frames a sends in one exchange with b (delivered to b)."""
    out: list[Any] = []
    for m in a.data_to_send():
        out += _frames(m)
        b.receive_data(m)
    return out


def test_bare_acknowledgement_every_ack_every_frames() -> None:
    client, server = pair()
    exchange(client, server)
    for _ in range(ACK_EVERY):
        server.send_message(0, notification())
    for m in server.data_to_send():
        client.receive_data(m)
    wire = [f for m in client.data_to_send() for f in _frames(m)]
    assert [4, 0, 0, 0, client.received_position] in wire
    assert client.received_position >= ACK_EVERY


def test_replay_bound_one_way_bulk() -> None:
    """A server streams to a client that reads slowly: what the server keeps for resume
    never exceeds the client's connection window in payload (plus frame headers)."""
    settings = Settings(initial_window=65536, connection_window=262144, max_streams=8)
    client, server = pair(settings=settings)
    exchange(client, server)
    sids = [client.open_stream(request(i), end=True) for i in range(1, 5)]
    exchange(client, server)
    rng = random.Random(7)
    worst = 0
    inflight: deque[bytes] = deque()
    unread: deque[MessageReceived] = deque()
    for step in range(3000):
        if server.buffered() < 200_000:
            server.send_message(rng.choice(sids), notification(step=step, pad="y" * 1500))
        inflight.extend(server.data_to_send())
        # A slow link delivers some of what is in flight; the client reads some of it.
        if inflight and rng.random() < 0.3:
            unread.extend(
                e for e in client.receive_data(inflight.popleft()) if isinstance(e, MessageReceived)
            )
        for _ in range(rng.randint(0, 4)):
            if unread:
                e = unread.popleft()
                client.acknowledge_received(e.stream_id, e.flow_controlled_length)
        for m in client.data_to_send():
            server.receive_data(m)
        payload_kept = server.replay_buffered
        worst = max(worst, payload_kept)
        # Each kept frame adds at most 16 bytes of header to its payload.
        assert payload_kept <= settings.connection_window + 16 * 1024
    assert worst > settings.connection_window // 4  # the bound was approached, not idle


def test_position_beyond_what_was_sent_is_a_protocol_error() -> None:
    client, server = pair()
    exchange(client, server)
    events = client.receive_data(msgpack.packb([4, 0, 0, 0, 10**6]))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.PROTOCOL_ERROR
    client, server = pair()
    exchange(client, server)
    events = client.receive_data(msgpack.packb([5, 0, 0, 1, "x"]))
    assert isinstance(events[-1], ConnectionTerminated)


def test_malformed_resume_map_is_a_protocol_error() -> None:
    client = Connection(Role.CLIENT, resume=ResumeHello())
    bad = msgpack.packb([0, 0, 0, {"resume": {"token": 5}}])
    events = client.receive_data(bad)
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].error_code is ErrorCode.PROTOCOL_ERROR


def test_refused_resume_ends_the_connection_with_session_lost() -> None:
    client, server = pair()
    sid = client.open_stream(request(1), end=True)
    exchange(client, server)
    client.suspend()
    client.begin_resume()
    (hello_message,) = client.data_to_send()
    ask = resume_request(hello_message)
    assert ask is not None
    assert ask.token == "t0"
    assert ask.received == client.received_position
    events = client.receive_data(refusal(Settings(), "unknown or expired token"))
    assert isinstance(events[-1], ConnectionTerminated)
    assert events[-1].session_lost
    assert "resume refused" in events[-1].reason
    assert client.closed
    assert sid == 1


def test_lost_link_without_resume_is_session_lost_when_negotiated() -> None:
    client, server = pair()
    exchange(client, server)
    (event,) = client.connection_lost()
    assert isinstance(event, ConnectionTerminated)
    assert event.session_lost
    client, server = pair(server_offer=False)
    exchange(client, server)
    (event,) = client.connection_lost()
    assert isinstance(event, ConnectionTerminated)
    assert not event.session_lost


def test_dead_peer_suspends_instead_of_failing() -> None:
    clock = FakeClock()
    client, server = pair(clock, settings=Settings(ping_interval=1))
    exchange(client, server)
    clock.advance(1.5)
    assert client.tick() == []  # the keepalive PING
    client.data_to_send()
    clock.advance(10)
    events = client.tick()
    assert [type(e) for e in events] == [LinkLost]
    assert client.suspended
    assert client.next_deadline() is None
    assert client.data_to_send() == []


def test_peer_that_never_acknowledges_loses_resume_not_memory() -> None:
    client, server = pair(settings=Settings(ping_interval=0))
    exchange(client, server)
    for i in range(MAX_UNACKED_FRAMES + 10):
        client.send_message(0, notification(i=i))
        client.data_to_send()  # never delivered: nothing acknowledges
    assert not client.resumable
    assert client.replay_buffered == 0


def test_resume_request_must_come_alone() -> None:
    hello = msgpack.packb([0, 0, 0, {"resume": {"token": "t", "received": 0}}])
    with pytest.raises(Exception, match="alone"):
        resume_request(hello + msgpack.packb([5, 0, 0, 1]))
    assert resume_request(msgpack.packb([0, 0, 0, {"resume": {}}])) is None
    assert resume_request(msgpack.packb([0, 0, 0, {}])) is None
    frames = frames_of([refusal(Settings(), "no")])
    assert [type(f).__name__ for f in frames] == ["Hello", "GoAway"]


class LossyLink:
    """A client and a server over a link that a test cuts whenever it likes: what is
    in flight is lost, both sides suspend, the client asks to resume on a new link and
    the server (holding a token table as a real server does) answers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        settings = Settings(initial_window=16384, connection_window=65536, ping_interval=0)
        self.client, self.server = pair(self.clock, settings=settings)
        self.up: deque[bytes] = deque()  # client -> server
        self.down: deque[bytes] = deque()  # server -> client
        self.tokens = {"t0"}  # tokens the server would accept now
        self.confirmed = True  # the client has spoken since the last resume
        self.resuming = False  # the client's resume HELLO is out
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.resumes = 0
        self.turns = 0
        self.consumed: dict[Role, int] = {}

    def pump(self) -> None:
        self.up.extend(self.client.data_to_send())
        self.down.extend(self.server.data_to_send())

    def deliver_up(self) -> None:
        if not self.up:
            return
        message = self.up.popleft()
        if self.resuming:
            ask = resume_request(message)
            assert ask is not None
            assert ask.token in self.tokens
            assert ask.received is not None
            self.turns += 1
            token = f"t{self.turns}"
            if self.confirmed:
                self.tokens = {ask.token}
            self.tokens.add(token)  # the old one holds until the client speaks again
            self.confirmed = False
            self.server.resume_accepted(ask.received, token=token)
            self.resuming = False
            return
        if not self.confirmed:
            self.tokens = {self.server.resume_token or ""}
            self.confirmed = True
        self.server_events += self.server.receive_data(message)

    def deliver_down(self) -> None:
        if self.down and not self.resuming:
            self.client_events += self.client.receive_data(self.down.popleft())

    def consume(self) -> None:
        """Both applications read what arrived (credit goes back)."""
        for side, events in ((self.client, self.client_events), (self.server, self.server_events)):
            done = self.consumed.get(side.role, 0)
            for e in events[done:]:
                if isinstance(e, MessageReceived):
                    side.acknowledge_received(e.stream_id, e.flow_controlled_length)
            self.consumed[side.role] = len(events)

    def cut(self) -> None:
        self.up.clear()
        self.down.clear()
        if not self.client.suspended:
            self.client.suspend()
        if not self.server.suspended:
            self.server.suspend()
        self.client.begin_resume()
        self.resuming = True
        self.resumes += 1


@pytest.mark.parametrize("seed", range(12))
def test_cut_anywhere_nothing_lost_nothing_repeated(seed: int) -> None:
    """Requests and streamed answers (and messages on stream 0 both ways) across cuts at
    random points, some during a resume: each side receives exactly what the other sent,
    in order, once."""
    link = LossyLink(seed)
    rng = link.rng
    client, server = link.client, link.server
    link.pump()
    sent_up: dict[int, list[Any]] = {}
    sent_down: dict[int, list[Any]] = {}
    open_calls: list[int] = []
    next_id = 1
    for _ in range(4000):
        roll = rng.random()
        if roll < 0.08 and next_id <= 40 and client.can_open_stream and not client.suspended:
            message = request(next_id)
            sid = client.open_stream(message, end=True)
            sent_up.setdefault(sid, []).append(message)
            next_id += 1
        elif roll < 0.10 and not client.suspended:
            message = notification(up=rng.random())
            client.send_message(0, message)
            sent_up.setdefault(0, []).append(message)
        elif roll < 0.30 and not server.suspended:
            opened = [
                e.stream_id
                for e in link.server_events
                if isinstance(e, MessageReceived) and e.stream_id and e.stream_id not in sent_down
            ]
            open_calls += opened
            for sid in opened:
                sent_down[sid] = []
            if open_calls:
                sid = rng.choice(open_calls)
                finish = rng.random() < 0.2
                message = (result if finish else notification)(n=len(sent_down[sid]))
                server.send_message(sid, message, end=finish)
                sent_down[sid].append(message)
                if finish:
                    open_calls.remove(sid)
        elif roll < 0.32 and not server.suspended:
            message = notification(down=rng.random())
            server.send_message(0, message)
            sent_down.setdefault(0, []).append(message)
        elif roll < 0.34 and link.resumes < 60 and (client.resumable or client.suspended):
            link.cut()
        else:
            link.pump()
            (link.deliver_up if rng.random() < 0.5 else link.deliver_down)()
        link.consume()
    # Let everything through with no more cuts.
    for _ in range(2000):
        link.pump()
        if not (link.up or link.down) and not link.resuming:
            break
        link.deliver_up()
        link.deliver_down()
        link.consume()
    assert link.resumes > 5
    assert not any(isinstance(e, ConnectionTerminated) for e in link.client_events)
    assert not any(isinstance(e, ConnectionTerminated) for e in link.server_events)
    # A cut during a resume ends that attempt; the next one resumes.
    resumed = [e for e in link.client_events if isinstance(e, Resumed)]
    assert 5 < len(resumed) <= link.resumes
    assert sum(e.resent for e in resumed) > 0  # frames lost in flight were sent again
    assert _by_stream(link.server_events) == {k: v for k, v in sent_up.items() if v}
    got_down = _by_stream(link.client_events)
    assert got_down == {k: v for k, v in sent_down.items() if v}


def _by_stream(events: list[Event]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for e in events:
        if isinstance(e, MessageReceived):
            out.setdefault(e.stream_id, []).append(e.message)
    return out


def test_a_peer_with_a_huge_window_that_never_acknowledges_loses_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mcp_ws.protocol.connection.MAX_UNACKED_BYTES", 100_000)
    big = Settings(initial_window=2**31 - 1, connection_window=2**31 - 1, ping_interval=0)
    client, server = pair(settings=big)
    exchange(client, server)
    sid = client.open_stream(request(1), end=True)
    exchange(client, server)
    for i in range(100):
        server.send_message(sid, notification(i=i, pad="z" * 2000))
        server.data_to_send()  # lost in flight: never acknowledged
        assert server.replay_buffered <= 100_000 + 3000
    assert not server.resumable
    assert server.replay_buffered == 0
