"""Helpers for tests against a live server on loopback."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import uvicorn
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

import mcp_ws
from mcp_ws.protocol import Connection, Role
from mcp_ws.protocol.events import ConnectionTerminated, Event
from mcp_ws.protocol.frames import Frame, decode_message
from mcp_ws.sdk.bridge import BridgeReadStream, SessionBridge
from mcp_ws.sdk.client import client_streams
from mcp_ws.sdk.handover import HandoverReadStream
from mcp_ws.sdk.server import McpWsServer, session_runner
from mcp_ws.transport import (
    MemoryChannel,
    MessageChannel,
    WebSocket,
    accept_websocket,
    memory_channel_pair,
    open_websocket,
)
from mcp_ws.transport.mux import MuxConnection
from mcp_ws.transport.policy import HandshakePolicy

from .apps import Probe, build_app


@asynccontextmanager
async def memory_session(
    probe: Probe | None = None,
    *,
    buffer: int = 64,
    wrap: Callable[[MemoryChannel], MessageChannel] | None = None,
) -> AsyncIterator[tuple[ClientSession, SessionBridge, MemoryChannel, MemoryChannel]]:
    """A ClientSession and the test app's server session, over memory channels (no
    socket): the session, its bridge, and the client's and the server's channels.
    ``buffer``: messages each channel holds unread; ``wrap``: what the client speaks
    through, around its channel."""
    a, b = memory_channel_pair(buffer=buffer)
    server = McpWsServer(
        session_runner(build_app(probe)),
        policy=HandshakePolicy(),
        settings=mcp_ws.Settings(),
        limits=None,
        handshake_timeout=5,
        send_budget=1 << 20,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve_mux, b)
        channel = a if wrap is None else wrap(a)
        async with (
            client_streams(channel) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert isinstance(read, BridgeReadStream)
            assert read.bridge is not None
            yield session, read.bridge, a, b
        tg.cancel_scope.cancel()


@asynccontextmanager
async def live_server(**options: Any) -> AsyncIterator[tuple[mcp_ws.McpWsServer, Probe]]:
    """The test app served on a free loopback port."""
    probe = Probe()
    async with mcp_ws.serving(build_app(probe), port=0, **options) as server:
        yield server, probe


ROOT = Path(__file__).resolve().parent.parent


class AppProcess:
    """The test app in a process of its own: ``url`` to reach it, ``log`` of its stderr."""

    def __init__(self, process: anyio.abc.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.log = bytearray()

    async def stats(self) -> dict[str, int]:
        """Its open file descriptors, tasks and connections (from a fresh client)."""
        async with session_to(self.url) as session:
            result = await session.call_tool("stats", {})
        assert result.structured_content is not None
        return dict(result.structured_content)


@asynccontextmanager
async def served_app(
    backend: str,
    seconds: float = 30,
    *,
    timeouts: float | None = None,
    max_streams: int | None = None,
    ping_interval: float | None = None,
    resume_grace: float | None = None,
) -> AsyncIterator[AppProcess]:
    """The test app served over mcp-ws by ``python -m tests.apps`` in its own process,
    for ``seconds`` at most, its stderr collected; ``timeouts`` shortens the handshake
    and HELLO timeouts, ``max_streams`` and ``ping_interval`` set the server's settings,
    ``resume_grace`` how long it keeps a session whose client vanished.
    Killed on the way out."""
    args = [sys.executable, "-m", "tests.apps", str(seconds), backend]
    if timeouts is not None:
        args += ["--timeouts", str(timeouts)]
    if max_streams is not None:
        args += ["--max-streams", str(max_streams)]
    if ping_interval is not None:
        args += ["--ping-interval", str(ping_interval)]
    if resume_grace is not None:
        args += ["--resume-grace", str(resume_grace)]
    process = await anyio.open_process(args, cwd=ROOT)
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        with anyio.fail_after(20):
            url = (await process.stdout.receive()).decode().strip().splitlines()[0]
        app = AppProcess(process, url)
        async with anyio.create_task_group() as tg:

            async def drain(stream: anyio.abc.ByteReceiveStream) -> None:
                async for chunk in stream:
                    app.log += chunk

            tg.start_soon(drain, process.stderr)
            try:
                yield app
            finally:
                tg.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


@asynccontextmanager
async def app_process(
    backend: str, seconds: float = 30
) -> AsyncIterator[tuple[anyio.abc.Process, str]]:
    """Like `served_app`, yielding the process and its URL."""
    async with served_app(backend, seconds) as app:
        yield app.process, app.url


@asynccontextmanager
async def session_to(
    url: str, *, resume: bool = True, **callbacks: Any
) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` over ``mcp_ws.connect`` (``resume`` as there)."""
    async with (
        mcp_ws.connect(url, resume=resume) as (read, write),
        ClientSession(read, write, **callbacks) as s,
    ):
        await s.initialize()
        yield s


@asynccontextmanager
async def raw_websocket_server(
    talk: Callable[[WebSocket], Awaitable[None]],
) -> AsyncIterator[str]:
    """A hand-driven server on loopback: accepts any WebSocket handshake, then runs
    ``talk(ws)`` on each connection; yields its ``ws://`` URL."""

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async def accept(_request: object) -> None:
            return None

        ws = await accept_websocket(stream, check=accept, max_size=None)
        assert isinstance(ws, WebSocket)
        try:
            await talk(ws)
        finally:
            await ws.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle, tg)
        try:
            yield f"ws://127.0.0.1:{port}/mcp"
        finally:
            tg.cancel_scope.cancel()


class RawPeer:
    """A hand-driven mcp-ws client: our sans-I/O core on a real WebSocket."""

    def __init__(self, ws: WebSocket, core: Connection) -> None:
        self.ws = ws
        self.core = core
        self.events: list[Event] = []
        self.frames: list[Frame] = []

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, hello: bool = True) -> AsyncIterator[RawPeer]:
        ws = await open_websocket(url, subprotocols=["mcp-ws.v1"], max_size=None)
        peer = cls(ws, Connection(Role.CLIENT))
        if not hello:
            peer.core.data_to_send()  # drop our HELLO
        try:
            yield peer
        finally:
            await ws.aclose()

    async def flush(self) -> None:
        """Send what the core queued."""
        data = self.core.data_to_send()
        if data:
            await self.ws.send(data)

    async def send_raw(self, *messages: bytes | str) -> None:
        """Send WebSocket messages as they are."""
        await self.ws.send(list(messages))

    async def pump(self, seconds: float = 5.0) -> int | None:
        """Read until the server closes (or ``seconds``); returns the close code."""
        with anyio.move_on_after(seconds):
            while (message := await self.ws.receive()) is not None:
                await self._absorb(message)
            return self.ws.close_code
        return None

    async def until(self, predicate: Any, seconds: float = 5.0) -> list[Event]:
        """Read until ``predicate(events)`` holds."""
        with anyio.fail_after(seconds):
            while not predicate(self.events):
                message = await self.ws.receive()
                if message is None:
                    break
                await self._absorb(message)
        return self.events

    async def _absorb(self, message: bytes | str) -> None:
        """Record one server message's frames, feed it to the core, send any answer."""
        if isinstance(message, bytes):
            self.frames.extend(decode_message(message, max_frame_size=1 << 24))
            self.events.extend(self.core.receive_data(message))
        await self.flush_quietly()

    async def flush_quietly(self) -> None:
        with suppress(anyio.BrokenResourceError):
            await self.flush()

    def terminated(self) -> ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, ConnectionTerminated):
                return event
        return None


def request(rid: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        message["params"] = params
    return message


INITIALIZE = request(
    1,
    "initialize",
    {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
)


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn (asyncio) in a thread; yield ``http://127.0.0.1:PORT``."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = uvicorn.Config(app, ws="websockets-sansio", lifespan="auto", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def mux_of(read: object) -> MuxConnection:
    """The connection new requests go on, behind ``mcp_ws.connect``'s read stream."""
    assert isinstance(read, HandoverReadStream)
    bridge = read.bridge
    assert bridge is not None
    assert bridge.mux is not None
    return bridge.mux


async def failing_call(
    failures: list[MCPError], call: Callable[..., Awaitable[object]], *args: Any
) -> None:
    """Await ``call(*args)``, keeping the ``MCPError`` it fails with in ``failures``
    (for a task that a test expects to fail once the connection is gone)."""
    try:
        await call(*args)
    except MCPError as exc:
        failures.append(exc)
