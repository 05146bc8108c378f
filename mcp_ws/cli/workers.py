"""``mcp-ws serve APP --workers N``: N worker processes on one port, supervised.

Each worker is ``mcp-ws serve`` itself, listening on the same port with
``SO_REUSEPORT``, so the kernel spreads new connections over them. The supervisor:

- picks the port when ``--port 0`` (it holds a socket bound to it, never listening, so
  no other program takes the port between restarts);
- waits until every worker serves, then prints the URL;
- replaces a worker that exits on its own (crash, kill), logging it; a slot whose
  workers keep dying (`MAX_RESTARTS` within `RESTART_WINDOW` seconds) ends the server
  with exit code 1;
- on SIGTERM or SIGINT passes SIGTERM to every worker, which drains as a single server
  does (``/healthz`` 503, GOAWAY, ``--grace``), and exits 0 once they all did.

A worker watches its supervisor (`SUPERVISOR_CHECK`): if it is gone, even killed with
SIGKILL, the worker drains and exits too, rather than serve on, orphaned, on the port.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .common import fail, wait_for_stop_signal

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "serve_workers"]

logger = logging.getLogger("mcp_ws.cli")

MAX_RESTARTS = 5
"""Restarts of one worker slot allowed within `RESTART_WINDOW` seconds."""

RESTART_WINDOW = 30.0

READY_TIMEOUT = 30.0
"""Seconds a worker may take to start serving."""


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host``:``port`` with SO_REUSEPORT, which picks
    the port when it is 0 and keeps it ours while workers come and go."""
    if not hasattr(socket, "SO_REUSEPORT"):
        fail("--workers needs SO_REUSEPORT, which this platform does not have")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc}")
    return sock


class Worker:
    """One worker slot: its current process and its restart history."""

    def __init__(self, index: int, argv: list[str]) -> None:
        self.index = index
        self.argv = argv
        self.process: anyio.abc.Process | None = None
        self.restarts: deque[float] = deque()

    async def start(self, tg: anyio.abc.TaskGroup) -> str:
        """Start the process; returns its "serving ... at URL" line once it serves."""
        process = await anyio.open_process(self.argv, stdout=-1, stderr=None)
        self.process = process
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        try:
            with anyio.fail_after(READY_TIMEOUT):
                first = (await lines.receive_until(b"\n", 65536)).decode().strip()
        except (anyio.IncompleteRead, anyio.EndOfStream, TimeoutError):
            first = ""
        if " at " not in first:
            if process.returncode is None:
                process.kill()
            await process.aclose()
            fail(f"worker {self.index} did not start (exit code {process.returncode})")
        tg.start_soon(_forward, lines, self.index)
        return first


async def _forward(lines: BufferedByteReceiveStream, index: int) -> None:
    """A worker's further stdout lines, tagged with its number."""
    while True:
        try:
            line = await lines.receive_until(b"\n", 65536)
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
            return
        except anyio.BrokenResourceError:
            return
        print(f"[worker {index}] {line.decode(errors='replace')}", flush=True)


def worker_argv(port: int, siblings: str, index: int) -> list[str]:
    """This command line for one worker: the same options, one process, our port, and
    where the workers publish their private ports (for resume: transport/siblings.py)."""
    return [
        sys.executable,
        "-m",
        "mcp_ws",
        *sys.argv[1:],
        "--workers",
        "1",
        "--port",
        str(port),
        "--reuse-port",
        "--supervisor",
        str(os.getpid()),
        "--siblings",
        siblings,
        "--worker-index",
        str(index),
    ]


SUPERVISOR_CHECK = 0.5
"""Seconds between a worker's checks that its supervisor is still alive."""


async def supervisor_gone(pid: int) -> None:
    """Return once this process's parent is no longer ``pid`` (the supervisor died,
    even by SIGKILL, and the process was re-parented): the worker then drains and exits
    as on SIGTERM instead of serving on, orphaned, on the port."""
    while os.getppid() == pid:  # noqa: ASYNC110 - nothing to wait on: the kernel tells no one
        await anyio.sleep(SUPERVISOR_CHECK)


async def serve_workers(args: argparse.Namespace) -> int:
    """Run ``args.workers`` workers until SIGINT or SIGTERM (see the module doc)."""
    reserved = reserve_port(args.host, args.port)
    port = int(reserved.getsockname()[1])
    siblings = tempfile.mkdtemp(prefix="mcp-ws-workers-")
    workers = [Worker(i + 1, worker_argv(port, siblings, i + 1)) for i in range(args.workers)]
    stopping = False
    failure: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            first = ""
            for worker in workers:
                first = await worker.start(tg)
            url = first.rsplit(" at ", 1)[1]
            print(f"mcp-ws: serving {args.target} at {url} with {len(workers)} workers", flush=True)

            async def supervise(worker: Worker) -> None:
                while True:
                    process = worker.process
                    assert process is not None
                    code = await process.wait()
                    await process.aclose()
                    if stopping:
                        return
                    now = time.monotonic()
                    worker.restarts.append(now)
                    while worker.restarts and now - worker.restarts[0] > RESTART_WINDOW:
                        worker.restarts.popleft()
                    if len(worker.restarts) > MAX_RESTARTS:
                        failure.append(
                            f"worker {worker.index} exited {len(worker.restarts)} times in "
                            f"{RESTART_WINDOW:g} s (last exit code {code}): giving up"
                        )
                        tg.cancel_scope.cancel()
                        return
                    print(
                        f"mcp-ws: worker {worker.index} (pid {process.pid}) exited with code "
                        f"{code}; starting a new one",
                        flush=True,
                    )
                    await worker.start(tg)
                    assert worker.process is not None
                    print(
                        f"mcp-ws: worker {worker.index} serving again (pid {worker.process.pid})",
                        flush=True,
                    )

            for worker in workers:
                tg.start_soon(supervise, worker)
            received = await wait_for_stop_signal()
            stopping = True
            print(
                f"mcp-ws: {received.name}: draining {len(workers)} workers "
                f"(in-flight calls get {args.grace:g} s)",
                flush=True,
            )
            for worker in workers:
                if worker.process is not None and worker.process.returncode is None:
                    worker.process.send_signal(signal.SIGTERM)
    finally:
        reserved.close()
        shutil.rmtree(siblings, ignore_errors=True)
        with anyio.CancelScope(shield=True):
            for worker in workers:
                process = worker.process
                if process is not None and process.returncode is None:
                    with anyio.move_on_after(args.grace + 10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                    await process.aclose()
    if failure:
        fail(failure[0])
    print("mcp-ws: stopped", flush=True)
    return 0
