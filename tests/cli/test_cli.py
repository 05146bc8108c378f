"""The ``mcp-ws`` command, run as a subprocess on loopback, with the CLI on asyncio and trio.

The test's own event loop (asyncio or trio, from the ``anyio_backend`` fixture) drives
the clients and in-process servers; the command runs on the same backend.
"""

from __future__ import annotations

import contextlib
import json
import os
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
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, TextContent

import mcp_ws

from ..livehelpers import failing_call, live_server, mux_of, session_to

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHILD = f"{sys.executable} -m tests.apps stdio"  # a stdio MCP server written in Python


def mcp_ws_command(backend: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "mcp_ws", "--backend", backend, *args]


async def run_command(backend: str, *args: str, limit: float = 30) -> tuple[int, str, str]:
    """Run ``mcp-ws ARGS`` to its end; returns (exit code, stdout, stderr)."""
    with anyio.fail_after(limit):
        done = await anyio.run_process(mcp_ws_command(backend, *args), cwd=ROOT, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


class Running:
    """A long-running ``mcp-ws`` subprocess: its first stdout line, then more lines."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        self._lines = BufferedByteReceiveStream(process.stdout)
        self.stderr = b""

    async def line(self) -> str:
        return (await self._lines.receive_until(b"\n", 65536)).decode()

    async def url(self) -> str:
        first = await self.line()
        assert " at ws" in first, first
        return first.rsplit(" ", 1)[-1].strip()

    async def rest(self) -> str:
        """Everything else on stdout, once the process has ended."""
        chunks = []
        while True:
            try:
                chunks.append(await self._lines.receive())
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return b"".join(chunks).decode()


@asynccontextmanager
async def running(backend: str, *args: str) -> AsyncIterator[Running]:
    """``mcp-ws ARGS`` as a subprocess; killed on the way out if still running."""
    process = await anyio.open_process(mcp_ws_command(backend, *args), cwd=ROOT)
    try:
        yield Running(process)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def text_of(result: Any) -> str:
    return "".join(b.text for b in result.content if isinstance(b, TextContent))


# ---------------------------------------------------------------------------- serve + call


async def test_serve_then_call_tools_and_a_graceful_shutdown(anyio_backend: str) -> None:
    with anyio.fail_after(60):
        async with running(anyio_backend, "serve", "tests.apps:build_app", "--port", "0") as server:
            url = await server.url()
            code, out, err = await run_command(anyio_backend, "call", url, "generate", "count=20")
            assert (code, out) == (0, "".join(f"t{i} " for i in range(20)) + "\n"), err
            code, out, _ = await run_command(
                anyio_backend, "call", url, "add", "a=2", "--args", '{"b": 40}'
            )
            assert (code, out) == (0, "42\n")
            code, out, _ = await run_command(anyio_backend, "tools", url)
            assert code == 0
            lines = out.splitlines()
            assert any(line.split()[0] == "generate" and "Stream" in line for line in lines)
            code, out, _ = await run_command(anyio_backend, "tools", url, "--json")
            assert "echo" in {tool["name"] for tool in json.loads(out)}
            code, out, err = await run_command(anyio_backend, "call", url, "stream_then_fail")
            assert code == 1
            assert out == "partial output\n"
            assert "the tool failed" in err
            assert "the model fell over" in err

            # SIGTERM while a call is in flight: GOAWAY, and the call still finishes
            async with session_to(url) as session:
                await session.list_tools()  # the SDK validates results against this list
                async with anyio.create_task_group() as tg:
                    results: list[Any] = []

                    async def slow_call() -> None:
                        results.append(await session.call_tool("sleepy", {"seconds": 0.5}))

                    tg.start_soon(slow_call)
                    await anyio.sleep(0.2)
                    server.process.send_signal(signal.SIGTERM)
            assert text_of(results[0]) == "rested"
            assert await server.process.wait() == 0
            rest = await server.rest()
            assert "SIGTERM: shutting down" in rest
            assert "stopped" in rest


async def test_call_renders_partial_output_live_and_ctrl_c_cancels_on_the_server(
    anyio_backend: str,
) -> None:
    with anyio.fail_after(60):
        async with live_server() as (server, probe):
            args = ("call", server.url, "generate", "count=100000", "pause=0.01")
            async with running(anyio_backend, *args) as call:
                assert call.process.stdout is not None
                first = await call.process.stdout.receive()
                assert first.startswith(b"t0 ")  # shown while the tool is still running
                call.process.send_signal(signal.SIGINT)
                assert await call.process.wait() == 130
                with anyio.fail_after(5):
                    await probe.stream_cancelled.wait()
            assert 0 < probe.sent < 100_000


# ---------------------------------------------------------------------------- bridge


async def test_bridge_gives_each_connection_its_own_isolated_child(anyio_backend: str) -> None:
    with anyio.fail_after(60):
        async with running(anyio_backend, "bridge", "--stdio", CHILD, "--port", "0") as bridge:
            url = await bridge.url()
            async with session_to(url) as one, session_to(url) as two:
                pid_one = text_of(await one.call_tool("whoami", {}))
                pid_two = text_of(await two.call_tool("whoami", {}))
                assert pid_one != pid_two  # one process per session

                # the same request ids on both sessions, concurrently, never crossed
                async def echo_many(session: ClientSession, tag: str) -> list[str]:
                    return [
                        text_of(await session.call_tool("echo", {"text": f"{tag}{i}"}))
                        for i in range(20)
                    ]

                answers: dict[str, list[str]] = {}
                async with anyio.create_task_group() as tg:

                    async def run(session: ClientSession, tag: str) -> None:
                        answers[tag] = await echo_many(session, tag)

                    tg.start_soon(run, one, "a")
                    tg.start_soon(run, two, "b")
                assert answers == {tag: [f"{tag}{i}" for i in range(20)] for tag in "ab"}

                # a cancel on one session reaches its child, and only that child
                with anyio.move_on_after(0.5):
                    await one.call_tool("sleepy", {"seconds": 30})
                for _ in range(50):
                    if text_of(await one.call_tool("probe_state", {})) == "started,cancelled":
                        break
                    await anyio.sleep(0.05)
                assert text_of(await one.call_tool("probe_state", {})) == "started,cancelled"
                assert text_of(await two.call_tool("probe_state", {})) == ""

                # partial results travel through the bridge on the call's own stream
                async with mcp_ws.stream_tool(two, "generate", {"count": 30}) as stream:
                    events = [event async for event in stream]
                deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
                assert stream.direct
                assert len(deltas) == 30
                assert "".join(d.text for d in deltas) == text_of(stream.result)


async def test_bridge_reports_a_crashed_child_as_a_clean_error(anyio_backend: str) -> None:
    with anyio.fail_after(60):
        async with running(
            anyio_backend, "bridge", "--stdio", CHILD, "--port", "0", "--log-level", "info"
        ) as bridge:
            url = await bridge.url()
            async with session_to(url) as doomed, session_to(url) as other:
                with pytest.raises(MCPError) as failure:
                    await doomed.call_tool("crash", {"code": 3})
                assert failure.value.error.code == CONNECTION_CLOSED
                assert "exited with code 3" in failure.value.error.message
                # the other session's child is untouched
                assert text_of(await other.call_tool("echo", {"text": "fine"})) == "fine"
            bridge.process.send_signal(signal.SIGINT)
            assert await bridge.process.wait() == 0
            assert bridge.process.stderr is not None
            chunks = []
            with contextlib.suppress(anyio.EndOfStream):
                for _ in range(1000):
                    chunks.append(await bridge.process.stderr.receive())
            log = b"".join(chunks).decode()
            assert "crashing with code 3" in log  # the child's stderr, in the bridge's log


# ---------------------------------------------------------------------------- stdio


async def test_stdio_reverse_bridge_serves_a_stdio_client(anyio_backend: str) -> None:
    with anyio.fail_after(60):
        async with live_server() as (server, _):
            params = StdioServerParameters(
                command=sys.executable,
                args=["-m", "mcp_ws", "--backend", anyio_backend, "stdio", server.url],
                cwd=ROOT,
            )
            async with (
                stdio_client(params) as (read, write),
                ClientSession(
                    read, write, notification_bindings=[mcp_ws.partial_result_binding()]
                ) as session,
            ):
                init = await session.initialize()
                assert init.server_info.name == "mcp-ws-test"
                assert text_of(await session.call_tool("echo", {"text": "through"})) == "through"
                async with mcp_ws.stream_tool(session, "generate", {"count": 25}) as stream:
                    events = [event async for event in stream]
                deltas = [e for e in events if isinstance(e, mcp_ws.Delta)]
                assert len(deltas) == 25
                assert not stream.direct
                assert "".join(d.text for d in deltas) == text_of(stream.result)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module:app", "cannot import 'no_such_module'"),
        ("tests.apps:nope", "has no attribute 'nope'"),
        ("tests.apps:Probe", "is a Probe, not an MCPServer"),
        ("tests.apps:", "expected MODULE:APP"),
    ],
)
async def test_serve_refuses_a_bad_module_app(
    anyio_backend: str, target: str, message: str
) -> None:
    code, out, err = await run_command(anyio_backend, "serve", target, "--port", "0")
    assert code in (1, 2)
    assert out == ""
    assert err.startswith("mcp-ws: ")
    assert message in err


async def test_serve_on_a_port_in_use_says_so(anyio_backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = await run_command(
            anyio_backend, "serve", "tests.apps:build_app", "--port", port
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in err


async def test_call_to_an_unreachable_url_says_so(anyio_backend: str) -> None:
    url = f"ws://127.0.0.1:{free_port()}/mcp"
    code, _, err = await run_command(anyio_backend, "call", url, "echo", "text=x")
    assert code == 1
    assert f"cannot connect to {url}: connection refused" in err


async def test_a_refused_token_and_an_accepted_one(anyio_backend: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    with anyio.fail_after(60):
        async with running(
            anyio_backend,
            "serve",
            "tests.apps:build_app",
            "--port",
            "0",
            "--token-file",
            str(token_file),
        ) as server:
            url = await server.url()
            code, _, err = await run_command(anyio_backend, "tools", url)
            assert code == 1
            assert "the server refused the connection: 401" in err
            code, _, err = await run_command(anyio_backend, "tools", url, "--token", "wrong")
            assert code == 1
            assert "401" in err
            code, out, _ = await run_command(
                anyio_backend, "call", url, "echo", "text=ok", "--token-file", str(token_file)
            )
            assert (code, out) == (0, "ok\n")
            env_code = await anyio.run_process(
                mcp_ws_command(anyio_backend, "call", url, "echo", "text=env"),
                cwd=ROOT,
                check=False,
                env={**os.environ, "MCP_WS_TOKEN": "s3cret"},
            )
            assert (env_code.returncode, env_code.stdout) == (0, b"env\n")


async def test_several_tokens_are_several_principals(anyio_backend: str, tmp_path: Path) -> None:
    """``--token`` more than once (or a token file of several lines): each is let in,
    anything else is refused; each is a principal of its own for resume."""
    tokens = tmp_path / "tokens"
    tokens.write_text("alice\n\nbob\n")
    with anyio.fail_after(60):
        for given in (["--token", "alice", "--token", "bob"], ["--token-file", str(tokens)]):
            args = ("serve", "tests.apps:build_app", "--port", "0", *given)
            async with running(anyio_backend, *args) as server:
                url = await server.url()
                for token in ("alice", "bob"):
                    code, out, err = await run_command(
                        anyio_backend, "call", url, "echo", f"text={token}", "--token", token
                    )
                    assert (code, out) == (0, f"{token}\n"), err
                code, _, err = await run_command(anyio_backend, "tools", url, "--token", "eve")
                assert code == 1
                assert "401" in err
    code, _, err = await run_command(
        anyio_backend, "serve", "tests.apps:build_app", "--token", "a", "--token-file", str(tokens)
    )
    assert code == 2
    assert "not both" in err


async def test_bad_arguments_are_usage_errors(anyio_backend: str) -> None:
    code, _, err = await run_command(
        anyio_backend, "call", "ws://127.0.0.1:1/mcp", "echo", "novalue"
    )
    assert code == 2
    assert "expected key=value, got 'novalue'" in err
    code, _, err = await run_command(anyio_backend, "call", "http://127.0.0.1:1/mcp", "echo")
    assert code == 2
    assert "expected a ws:// or wss:// URL" in err
    code, _, err = await run_command(
        anyio_backend, "bridge", "--stdio", "no-such-command-xyz", "--port", "0"
    )
    assert code == 1
    assert "command not found: no-such-command-xyz" in err


async def test_serve_over_tls_and_call_with_a_private_ca(
    anyio_backend: str, tmp_path: Path
) -> None:
    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    authority.cert_pem.write_to_path(str(ca))
    with anyio.fail_after(60):
        args = (
            "serve",
            "tests.apps:build_app",
            "--port",
            "0",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        )
        async with running(anyio_backend, *args) as server:
            url = await server.url()
            assert url.startswith("wss://127.0.0.1:")
            code, out, err = await run_command(
                anyio_backend, "call", url, "echo", "text=secure", "--cafile", str(ca)
            )
            assert (code, out) == (0, "secure\n"), err
            code, _, err = await run_command(anyio_backend, "call", url, "echo", "text=x")
            assert code == 1
            assert "cannot connect" in err
            assert "certificate" in err.lower()
    code, _, err = await run_command(
        anyio_backend, "serve", "tests.apps:build_app", "--tls-key", str(key)
    )
    assert code == 2
    assert "--tls-key needs --tls-cert" in err


async def test_a_child_that_cannot_start_answers_the_first_request_with_the_reason() -> None:
    from mcp.shared.message import SessionMessage
    from mcp_types import JSONRPCError, JSONRPCRequest

    from mcp_ws.sdk.proxy import stdio_bridge

    to_bridge, read = anyio.create_memory_object_stream[Any](4)
    write, from_bridge = anyio.create_memory_object_stream[Any](4)
    request = JSONRPCRequest(jsonrpc="2.0", id=7, method="initialize", params={})
    with anyio.fail_after(10):
        async with to_bridge, read, write, from_bridge:
            await to_bridge.send(SessionMessage(message=request))
            await stdio_bridge([str(ROOT / "no-such-server")])(read, write)
            answer = (await from_bridge.receive()).message
    assert isinstance(answer, JSONRPCError)
    assert answer.id == 7
    assert answer.error.code == CONNECTION_CLOSED
    assert answer.error.message.startswith("cannot start the MCP server: ")
    assert "no-such-server" in answer.error.message


# ---------------------------------------------------------------------------- resume


async def test_serve_resume_options_and_a_killed_server(anyio_backend: str) -> None:
    """``--node`` and ``--resume-grace`` reach the client in the server's HELLO; a server
    killed mid-call leaves the call with OUTCOME_UNKNOWN once the grace has passed (no
    hang, no silent re-send); bad values are refused before serving."""
    for bad in (["--max-detached", "0"], ["--resume-grace", "-1"]):
        code, _, err = await run_command(anyio_backend, "serve", "tests.apps:build_app", *bad)
        assert code == 2, err
        assert bad[0] in err
    with anyio.fail_after(60):
        args = ("serve", "tests.apps:build_app", "--port", "0", "--node", "edge-1")
        async with running(anyio_backend, *args, "--resume-grace", "1") as server:
            url = await server.url()
            async with (
                mcp_ws.connect(url) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                mux = mux_of(read)
                assert (mux.core.resume_node, mux.core.resume_grace) == ("edge-1", 1)
                failures: list[MCPError] = []
                async with anyio.create_task_group() as tg:
                    sleepy = ("sleepy", {"seconds": 30})
                    tg.start_soon(failing_call, failures, session.call_tool, *sleepy)
                    await anyio.sleep(0.3)
                    server.process.kill()
                assert [f.error.code for f in failures] == [mcp_ws.OUTCOME_UNKNOWN]
                assert "grace" in failures[0].error.message


async def test_a_killed_call_process_and_a_new_one_that_attaches(anyio_backend: str) -> None:
    """``mcp-ws call`` SIGKILLed mid-answer (no cancel reaches the server); a new
    ``mcp-ws attach`` process reads the rest by the handle ``call`` printed: every token
    once. ``serve`` hosts the call beyond its session; bad store options are refused."""
    for bad in (["--retain", "-1"], ["--retain-bytes", "0"], ["--retain-unread-bytes", "0"]):
        code, _, err = await run_command(anyio_backend, "serve", "tests.apps:build_app", *bad)
        assert code == 2, err
        assert bad[0] in err
    with anyio.fail_after(60):
        serve = ("serve", "tests.apps:build_app", "--port", "0", "--resume-grace", "10")
        async with running(anyio_backend, *serve, "--retain", "30") as server:
            url = await server.url()
            args = ("call", url, "generate", "count=200", "pause=0.01")
            async with running(anyio_backend, *args) as call:
                assert call.process.stderr is not None
                hint = b""
                while b"\n" not in hint:
                    hint += await call.process.stderr.receive()
                first_line = hint.decode().splitlines()[0]
                assert first_line.startswith(
                    f"mcp-ws: to read this call again: mcp-ws attach {url} "
                )
                handle = first_line.rsplit(" ", 1)[-1]
                assert call.process.stdout is not None
                shown = ""
                while shown.count(" ") < 20:
                    shown += (await call.process.stdout.receive()).decode()
                call.process.kill()
                await call.process.wait()
            seen = shown[: shown.rindex(" ") + 1]  # whole tokens: the last one seen is its seq
            after = seen.count(" ")
            code, out, err = await run_command(
                anyio_backend, "attach", url, handle, "--after", str(after)
            )
            assert code == 0, err
            assert seen + out.rstrip("\n") == "".join(f"t{i} " for i in range(200))
            code, _, err = await run_command(anyio_backend, "attach", url, "no-such-handle")
            assert code == 1
            assert "unknown handle" in err
