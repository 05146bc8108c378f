"""The transports under test: how to start each server and open a client on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from ..sdk.client import connect
from .app import BIG_SETTINGS, CPU_ENV, build_bench_app

__all__ = ["TARGETS", "Running", "Target", "cpu_placement", "running"]

SERVER_ARGS = ("-m", "mcp_ws.bench")
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """One transport in one protocol era."""

    kind: str  # "ws", "stdio", "http" or "inproc"
    mode: str  # mcp.Client's mode: "auto" (2026-07-28 when offered) or "legacy"

    @property
    def label(self) -> str:
        name = {
            "ws": "mcp-ws",
            "stdio": "stdio",
            "http": "streamable HTTP",
            "inproc": "in-process",
        }[self.kind]
        return name if self.mode == "auto" else f"{name} (legacy)"

    @property
    def ours(self) -> bool:
        """Whether this is mcp-ws (as opposed to a stock transport or the floor)."""
        return self.kind == "ws"

    @property
    def stock(self) -> bool:
        """Whether this is one of the SDK's own transports."""
        return self.kind in ("stdio", "http")


TARGETS = (
    *(Target(kind, mode) for kind in ("ws", "stdio", "http") for mode in ("auto", "legacy")),
    Target("inproc", "auto"),
)
"""Every target, mcp-ws first, the in-process floor last."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the streamable HTTP server did not listen on port {port}")


def cpu_placement() -> tuple[int, int] | None:
    """Two CPUs, one for the bench's client and one for the servers, or ``None`` where
    the OS cannot pin processes or offers a single CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


class Running:
    """A server for one transport kind, started once and shared by both eras.

    With ``cpu``, the server process keeps to that CPU (stdio servers too: each client
    starts its own, with the same setting).
    """

    def __init__(self, kind: str, cpu: int | None = None) -> None:
        self.kind = kind
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.env = {CPU_ENV: str(cpu)} if cpu is not None else {}

    def start(self) -> None:
        env = {**os.environ, **self.env}
        if self.kind == "ws":
            self.process = subprocess.Popen(
                [sys.executable, *SERVER_ARGS, "ws"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            assert self.process.stdout is not None
            self.address = self.process.stdout.readline().decode().strip()
            if not self.address.startswith("ws://"):
                raise RuntimeError("the mcp-ws bench server did not start")
        elif self.kind == "http":
            port = _free_port()
            self.process = subprocess.Popen(
                [sys.executable, *SERVER_ARGS, "http", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            _wait_for_port(port, self.process)
            self.address = f"http://127.0.0.1:{port}/mcp"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5 if self.kind == "ws" else 0.01)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def client(self, target: Target, **options: Any) -> Client:
        """A new ``mcp.Client`` on this server in ``target``'s era."""
        transport: Any
        if self.kind == "ws":
            url = self.address
            transport = connect(url, settings=BIG_SETTINGS)
        elif self.kind == "http":
            transport = self.address
        elif self.kind == "stdio":
            transport = StdioServerParameters(
                command=sys.executable, args=[*SERVER_ARGS, "stdio"], env=self.env or None
            )
        else:
            transport = build_bench_app()
        return Client(transport, mode=target.mode, **options)


@asynccontextmanager
async def running(kind: str, cpu: int | None = None) -> AsyncIterator[Running]:
    """Start the server for ``kind`` (in its own process except stdio, which each client
    starts, and the in-process floor), on ``cpu`` if given; stop it on exit. Raises
    ``RuntimeError`` or ``TimeoutError`` if it does not start."""
    server = Running(kind, cpu)
    try:
        with anyio.fail_after(START_TIMEOUT):
            # abandoned on timeout: stop() below kills the process, which ends the read
            await anyio.to_thread.run_sync(server.start, abandon_on_cancel=True)
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)
