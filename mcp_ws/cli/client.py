"""``mcp-ws call``, ``mcp-ws attach``, ``mcp-ws tools`` and ``mcp-ws stdio``: the client
side of the command."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio
from mcp.client.session import ClientSession
from mcp.server.stdio import stdio_server
from mcp_types import CallToolResult, PaginatedRequestParams, TextContent

from ..sdk.attach import AttachedStream, attach
from ..sdk.client import connect
from ..sdk.proxy import forward_session
from ..sdk.stream_tool import (
    CallCancelledError,
    Completed,
    Delta,
    Failed,
    Started,
    ToolCallError,
    ToolStream,
    stream_tool,
)
from ..transport.websocket import HandshakeError
from .common import client_ssl, describe_os_error, fail, read_token

__all__ = [
    "add_client_options",
    "attach_command",
    "call_command",
    "parse_arguments",
    "stdio_command",
    "tools_command",
]


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that connects to an mcp-ws server."""
    parser.add_argument("url", metavar="URL", help="the server, e.g. ws://127.0.0.1:8765/mcp")
    parser.add_argument("--token", help="bearer token (default: $MCP_WS_TOKEN)")
    parser.add_argument("--token-file", metavar="PATH", help="read the bearer token from this file")
    parser.add_argument(
        "--cafile", metavar="PEM", help="trust this CA for wss:// (besides the system's)"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds (default: %(default)s)"
    )


def parse_arguments(pairs: list[str], raw_json: str | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they are JSON, else strings),
    merged over ``--args '{...}'``."""
    arguments: dict[str, Any] = {}
    if raw_json is not None:
        try:
            parsed = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            fail(f"--args is not valid JSON: {exc}", exit_code=2)
        if not isinstance(parsed, dict):
            fail("--args must be a JSON object", exit_code=2)
        arguments.update(parsed)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"expected key=value, got {pair!r}", exit_code=2)
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


@asynccontextmanager
async def _session(args: argparse.Namespace) -> AsyncIterator[ClientSession]:
    """An initialized session to ``args.url``, with clear errors when that fails."""
    async with _streams(args) as (read, write), ClientSession(read, write) as session:
        with anyio.fail_after(args.connect_timeout):
            await session.initialize()
        yield session


@asynccontextmanager
async def _streams(args: argparse.Namespace) -> AsyncIterator[tuple[Any, Any]]:
    url: str = args.url
    if not url.startswith(("ws://", "wss://")):
        fail(f"expected a ws:// or wss:// URL, got {url!r}", exit_code=2)
    token = read_token(args.token, args.token_file)
    ssl = client_ssl(url, args.cafile)
    async with contextlib.AsyncExitStack() as stack:
        try:
            streams = await stack.enter_async_context(
                connect(url, token=token, ssl=ssl, handshake_timeout=args.connect_timeout)
            )
        except HandshakeError as exc:
            status = f"{exc.status} " if exc.status else ""
            fail(f"the server refused the connection: {status}{exc}")
        except TimeoutError:
            fail(f"cannot connect to {url}: timed out")
        except OSError as exc:
            fail(f"cannot connect to {url}: {describe_os_error(exc)}")
        yield streams


def _text(result: CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, TextContent))


def _render_result(result: CallToolResult, out: TextIO, *, streamed: bool) -> None:
    """The final result, unless the deltas already showed it: its text, else its
    structured content; non-text blocks are noted on stderr."""
    text = _text(result)
    if not streamed:
        if text:
            out.write(text)
        elif result.structured_content is not None:
            out.write(json.dumps(result.structured_content))
    for block in result.content:
        if not isinstance(block, TextContent):
            mime = getattr(block, "mime_type", None) or ""
            print(f"[{block.type} {mime}]".rstrip(), file=sys.stderr)
    out.write("\n")
    out.flush()


async def _watch_for_interrupt(stream: ToolStream) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stream.cancel()  # the server is told; the stream ends with Failed
            return


async def call_command(args: argparse.Namespace) -> int:
    """Call a tool, show its output as it streams; Ctrl-C cancels it on the server."""
    arguments = parse_arguments(args.arguments, args.args)
    async with _session(args) as session:
        call = stream_tool(session, args.tool, arguments, read_timeout=args.timeout)
        return await _show(call, args.url)


async def attach_command(args: argparse.Namespace) -> int:
    """Read a streamed call again by its handle, live to its end; Ctrl-C cancels it."""
    if args.after is not None and args.after < 0:
        fail("--after must be at least 0", exit_code=2)
    async with _session(args) as session:
        return await _show(attach(session, args.handle, args.after), args.url)


async def _show(call: ToolStream, url: str) -> int:
    """Show a call's output as it streams (text on stdout, the rest on stderr)."""
    out = sys.stdout
    streamed = False  # whether deltas already showed the output
    async with call as stream, anyio.create_task_group() as watcher:
        watcher.start_soon(_watch_for_interrupt, stream)
        async for event in stream:
            if isinstance(event, Started) and event.handle and not isinstance(call, AttachedStream):
                print(
                    f"mcp-ws: to read this call again: mcp-ws attach {url} {event.handle}",
                    file=sys.stderr,
                    flush=True,
                )
            elif isinstance(event, Delta):
                if event.text:
                    out.write(event.text)
                if event.data is not None:
                    print(f"[{len(event.data)} bytes of binary]", file=sys.stderr)
                if event.structured is not None:
                    out.write(json.dumps(event.structured) + "\n")
                out.flush()
                streamed = True
            elif isinstance(event, Completed):
                _render_result(event.result, out, streamed=streamed)
            elif isinstance(event, Failed) and streamed:
                out.write("\n")
                out.flush()
        watcher.cancel_scope.cancel()
    outcome = stream.outcome
    if isinstance(outcome, Failed):
        error = outcome.error
        if isinstance(error, CallCancelledError):
            print("mcp-ws: cancelled", file=sys.stderr)
            return 130
        if isinstance(error, ToolCallError):
            print(f"mcp-ws: the tool failed: {error}", file=sys.stderr)
            return 1
        print(f"mcp-ws: the call failed: {error}", file=sys.stderr)
        return 1
    return 0


async def tools_command(args: argparse.Namespace) -> int:
    """List the server's tools: name, then the first line of the description."""
    async with _session(args) as session:
        tools = []
        cursor: str | None = None
        for _ in range(1000):  # pages; bounded
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
    if args.json:
        print(
            json.dumps(
                [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in tools],
                indent=2,
            )
        )
        return 0
    width = max((len(t.name) for t in tools), default=0)
    for tool in tools:
        summary = (tool.description or "").strip().splitlines()
        print(f"{tool.name:<{width}}  {summary[0] if summary else ''}".rstrip())
    if not tools:
        print("(no tools)", file=sys.stderr)
    return 0


async def stdio_command(args: argparse.Namespace) -> int:
    """Serve MCP on this process's stdin/stdout, forwarding to the mcp-ws server at URL."""
    async with _streams(args) as upstream, stdio_server() as local:

        async def gone() -> str:
            return f"the connection to {args.url} closed"

        await forward_session(local, upstream, server_gone=gone)
    return 0
