"""Deploys lose no call: three `mcp-ws serve` backends behind Debian's nginx, restarted
one after another (SIGTERM, drain, start again) while a client keeps making plain and
streaming calls through nginx. The nginx config is the one the README documents.

nginx runs on loopback with a config of its own in a temp folder; `.ci/run` installs it
when it is missing. Every call must have exactly one outcome, a success, and every
stream must arrive whole."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp_types import TextContent

import mcp_ws
from mcp_ws.sdk.handover import HandoverReadStream

from ..cutproxy import cut_proxy
from ..livehelpers import mux_of

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
INSTALLED = Path(NGINX).exists()
README_BACKENDS = (8001, 8002, 8003)  # the ports the README's config uses
README_FRONT = 8080

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def readme_config() -> str:
    """The nginx block of the README's deployment section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Behind nginx") :]
    match = re.search(r"```nginx\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's deployment section has no nginx block"
    return match.group(1)


def nginx_config(folder: Path, front: int, backends: list[int]) -> Path:
    """The README's block with our ports, inside a main config of its own."""
    block = readme_config()
    for documented, port in zip(README_BACKENDS, backends, strict=True):
        assert f"127.0.0.1:{documented}" in block
        block = block.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{port}")
    assert f"listen 127.0.0.1:{README_FRONT}" in block
    block = block.replace(f"listen 127.0.0.1:{README_FRONT}", f"listen 127.0.0.1:{front}")
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n    access_log off;\n{temp}\n{block}\n}}\n"
    )
    return config


async def http_status(port: int, path: str = "/healthz") -> int | None:
    """The status of a plain GET, or None if nothing answers."""
    try:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    except OSError:
        return None
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        await stream.send(request.encode())
        data = b""
        with anyio.move_on_after(5):
            while b"\r\n" not in data:
                try:
                    data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def until_status(port: int, status: int, path: str = "/healthz") -> None:
    with anyio.fail_after(20):
        while await http_status(port, path) != status:
            await anyio.sleep(0.05)


class Backend:
    """``mcp-ws serve tests.apps:build_app`` on a fixed port; restartable."""

    def __init__(
        self,
        port: int,
        tg: anyio.abc.TaskGroup,
        workers: int = 1,
        runs: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.extra = extra  # more options of `mcp-ws serve`
        self.runs = runs  # where `tagged` calls are counted, by every process
        self.tg = tg
        self.workers = workers
        self.process: anyio.abc.Process | None = None
        self.log = bytearray()
        self.exit_codes: list[int] = []

    async def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "mcp_ws",
            "serve",
            "tests.apps:build_app",
            "--port",
            str(self.port),
            "--grace",
            "10",
            "--log-level",
            "warning",
            "--workers",
            str(self.workers),
            *self.extra,
        ]
        env = {**os.environ, "MCP_WS_TEST_RUNS": str(self.runs)} if self.runs else None
        process = await anyio.open_process(command, cwd=ROOT, env=env)
        self.process = process
        assert process.stderr is not None
        assert process.stdout is not None
        self.tg.start_soon(self._collect, process.stderr)
        self.tg.start_soon(self._collect, process.stdout)
        await until_status(self.port, 200)

    async def _collect(self, stream: anyio.abc.ByteReceiveStream) -> None:
        try:
            async for chunk in stream:
                self.log += chunk
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the process was closed (stopped or killed)

    async def stop(self) -> None:
        process = self.process
        assert process is not None
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            self.exit_codes.append(await process.wait())
        await process.aclose()
        self.process = None

    async def kill(self) -> None:
        """Stop it at once, on the way out of a failed test."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        await process.aclose()
        self.process = None


@asynccontextmanager
async def deployment(
    tmp_path: Path, workers: int = 1, runs: Path | None = None, extra: tuple[str, ...] = ()
) -> AsyncIterator[tuple[str, list[Backend]]]:
    """Three backends (of ``workers`` processes each, ``extra`` options of ``mcp-ws
    serve``) and nginx in front; yields nginx's URL and the backends."""
    assert INSTALLED, "nginx is not installed: apt-get install nginx-light"
    front, *ports = free_ports(4)
    async with anyio.create_task_group() as tg:
        backends = [Backend(port, tg, workers, runs, extra) for port in ports]
        nginx: anyio.abc.Process | None = None
        try:
            for backend in backends:
                await backend.start()
            config = nginx_config(tmp_path, front, ports)
            nginx = await anyio.open_process(
                [NGINX, "-c", str(config), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
            )
            await until_status(front, 200, "/healthz")
            yield f"ws://127.0.0.1:{front}/mcp", backends
        finally:
            with anyio.CancelScope(shield=True):
                if nginx is not None:
                    nginx.send_signal(signal.SIGQUIT)
                    with anyio.move_on_after(5):
                        await nginx.wait()
                    if nginx.returncode is None:
                        nginx.kill()
                    await nginx.aclose()
                for backend in backends:
                    await backend.kill()
            tg.cancel_scope.cancel()


def text_of(result: object) -> str:
    content = getattr(result, "content", [])
    return "".join(b.text for b in content if isinstance(b, TextContent))


@pytest.mark.parametrize(
    ("mode", "workers"),
    [("auto", 1), ("legacy", 1), ("auto", 2)],
    ids=["2026-07-28", "2025-11-25", "2026-07-28, 2 workers each"],
)
async def test_a_rolling_restart_behind_nginx_loses_no_call(
    tmp_path: Path, mode: str, workers: int
) -> None:
    async with deployment(tmp_path, workers) as (url, backends):
        failures: list[str] = []
        done = {"plain": 0, "stream": 0}
        stop = anyio.Event()
        reads: list[HandoverReadStream] = []

        @asynccontextmanager
        async def transport() -> AsyncIterator[tuple[Any, Any]]:
            async with mcp_ws.connect(url) as (read, write):
                assert isinstance(read, HandoverReadStream)
                reads.append(read)
                yield read, write

        async with Client(transport(), mode=mode) as client:
            await client.list_tools()

            async def plain(worker: int) -> None:
                for n in range(100_000):  # bounded; ends when the restarts are over
                    if stop.is_set():
                        return
                    try:
                        result = await client.call_tool("add", {"a": worker, "b": n})
                        if text_of(result) != str(worker + n):
                            failures.append(f"add({worker}, {n}) = {text_of(result)!r}")
                    except Exception as exc:  # every failure is recorded, none hidden
                        failures.append(f"add: {exc!r}")
                    done["plain"] += 1
                    await anyio.sleep(0.005)

            async def streaming() -> None:
                expected = "".join(f"t{i} " for i in range(20))
                for _ in range(100_000):
                    if stop.is_set():
                        return
                    try:
                        args = {"count": 20, "pause": 0.005}
                        async with mcp_ws.stream_tool(client, "generate", args) as stream:
                            events = [event async for event in stream]
                        deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
                        if not isinstance(events[-1], mcp_ws.Completed):
                            failures.append(f"stream ended with {events[-1]!r}")
                        elif text_of(stream.result) != expected or len(deltas) != 20:
                            failures.append(f"stream incomplete: {len(deltas)} deltas")
                    except Exception as exc:
                        failures.append(f"stream: {exc!r}")
                    done["stream"] += 1

            async with anyio.create_task_group() as tg:
                for worker in range(2):
                    tg.start_soon(plain, worker)
                tg.start_soon(streaming)
                tg.start_soon(streaming)
                for backend in backends:  # a rolling restart, under load
                    await anyio.sleep(0.5)
                    await backend.stop()
                    await backend.start()
                await anyio.sleep(0.5)
                stop.set()
            connections = reads[0].handover.connections
        assert failures == []
        assert done["plain"] >= 50
        assert done["stream"] >= 10
        assert connections >= 2  # the client did move at least once
        for backend in backends:
            assert backend.exit_codes == [0]
            assert b"Traceback" not in backend.log, backend.log.decode(errors="replace")


@pytest.mark.parametrize("workers", [1, 2], ids=["1 worker each", "2 workers each"])
async def test_links_cut_at_random_behind_nginx_resume_on_their_backend(
    tmp_path: Path, workers: int
) -> None:
    """A relay between the client and nginx cuts every connection every 100 to 300 ms
    while 32 calls run (half streaming): each resume reaches, through nginx's map and
    the backend's workers, the process that holds its connection. No call is lost,
    fails or runs twice (every process counts its runs in one file)."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    async with deployment(tmp_path, workers, runs) as (url, _):
        front = int(url.rsplit(":", 1)[1].split("/")[0])
        async with cut_proxy(front, seed=workers) as proxy:
            proxy.byte_budget = (2_000, 400_000)
            async with (
                mcp_ws.connect(proxy.url()) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                assert isinstance(read, HandoverReadStream)
                outcomes: dict[str, str] = {}
                problems: list[str] = []

                async def call(tag: str, stream_it: bool) -> None:
                    args = {"tag": tag, "count": 40, "pause": 0.01}
                    try:
                        if stream_it:
                            async with mcp_ws.stream_tool(client, "tagged", args) as stream:
                                deltas = [
                                    e.text async for e in stream if isinstance(e, mcp_ws.Delta)
                                ]
                            outcomes[tag] = text_of(stream.result)
                            if "".join(deltas) != outcomes[tag]:
                                problems.append(f"{tag}: the deltas do not make the result")
                        else:
                            outcomes[tag] = text_of(await client.call_tool("tagged", args))
                    except Exception as exc:  # every failure is recorded, none hidden
                        problems.append(f"{tag}: {exc!r}")

                tags = [f"r{i}" for i in range(32)]
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(proxy.cut_every, 0.1, 0.3, 10)
                        for i, tag in enumerate(tags):
                            tg.start_soon(call, tag, i % 2 == 0)
                assert problems == []
                for tag in tags:
                    assert outcomes[tag] == "".join(f"{tag}.{i} " for i in range(40))
                assert mux_of(read).resumes >= 3
                assert read.handover.connections == 1  # every cut resumed, none replaced
        ran = runs.read_text().split()
        assert sorted(ran) == sorted(tags)  # each call ran once, on one process
        assert proxy.cuts >= 10
