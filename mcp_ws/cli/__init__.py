"""The ``mcp-ws`` command: serve, bridge, call, list tools, reverse-bridge to stdio, demo.

=================================  ===================================================
``mcp-ws demo``                    streaming, a cancel and a timing, all on loopback
``mcp-ws serve MODULE:APP``        serve an ``MCPServer`` or low-level ``Server``
``mcp-ws bridge --stdio "CMD"``    put any stdio MCP server behind mcp-ws
``mcp-ws call URL TOOL k=v ...``   call a tool, output shown live; Ctrl-C cancels
``mcp-ws tools URL``               list a server's tools
``mcp-ws stdio URL``               a local stdio endpoint forwarding to URL
``mcp-ws bench [--quick]``         mcp-ws against the SDK's own transports, side by side
=================================  ===================================================
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence

from .. import __version__
from .bench import add_bench_options, bench_command
from .client import (
    add_client_options,
    attach_command,
    call_command,
    stdio_command,
    tools_command,
)
from .common import run
from .demo import demo_command
from .serve import add_listen_options, add_store_options, serve_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line parser of ``mcp-ws``."""
    parser = argparse.ArgumentParser(
        prog="mcp-ws",
        description="Real streaming for MCP over one multiplexed WebSocket.",
    )
    parser.add_argument("--version", action="version", version=f"mcp-ws {__version__}")
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="event loop (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="streaming, a cancel and a timing on loopback, no setup"
    )
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the demo app with its chat page on loopback until interrupted",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8765,
        help="with --web: port; 0 picks a free one (default: %(default)s)",
    )

    serve = commands.add_parser("serve", help="serve an MCPServer or a low-level Server")
    serve.add_argument(
        "target",
        metavar="MODULE:APP",
        help="e.g. my_server:app (MODULE alone tries app, mcp, server)",
    )
    add_listen_options(serve)
    add_store_options(serve)

    bridge = commands.add_parser("bridge", help="expose a stdio MCP server over mcp-ws")
    bridge.add_argument(
        "--stdio",
        required=True,
        metavar='"COMMAND ARGS"',
        help="the server's command line; each connection gets its own process",
    )
    add_listen_options(bridge)

    call = commands.add_parser("call", help="call a tool and show its output live")
    add_client_options(call)
    call.add_argument("tool", metavar="TOOL")
    call.add_argument(
        "arguments",
        nargs="*",
        metavar="key=value",
        help="values are JSON when they parse, else text",
    )
    call.add_argument(
        "--args", metavar="JSON", help="arguments as a JSON object (key=value pairs override)"
    )
    call.add_argument("--timeout", type=float, help="seconds for the whole call")

    again = commands.add_parser(
        "attach", help="read a streamed call again by its handle (it may still run)"
    )
    add_client_options(again)
    again.add_argument("handle", metavar="HANDLE", help="what `mcp-ws call` printed")
    again.add_argument(
        "--after",
        type=int,
        metavar="SEQ",
        help="only the deltas after this seq (default: from the first one kept)",
    )

    tools = commands.add_parser("tools", help="list a server's tools")
    add_client_options(tools)
    tools.add_argument("--json", action="store_true", help="the full tool definitions as JSON")

    stdio = commands.add_parser("stdio", help="a stdio MCP endpoint that forwards to URL")
    add_client_options(stdio)

    bench = commands.add_parser(
        "bench", help="measure mcp-ws against the SDK's stdio and HTTP transports"
    )
    add_bench_options(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mcp-ws`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
        "demo": demo_command,
        "serve": serve_command,
        "bridge": serve_command,
        "call": call_command,
        "attach": attach_command,
        "tools": tools_command,
        "stdio": stdio_command,
        "bench": bench_command,
    }
    handler = handlers.get(args.command)
    if handler is None:
        parser.print_help()
        return 2
    return run(handler, args, backend=args.backend)
