"""``mcp-ws serve MODULE:APP`` and ``mcp-ws bridge --stdio "COMMAND"``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import shlex
import shutil
import sys
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer

from ..sdk.proxy import stdio_bridge
from ..sdk.redis_store import RedisStore, StoreUnavailable
from ..sdk.retained import CallStore, RetainedCalls, retained_calls
from ..sdk.server import SessionRunner, serving_sessions, session_runner
from ..sdk.store import (
    DEFAULT_MAX_CALL_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    DEFAULT_RETAIN,
    EmbeddedStore,
)
from ..transport.policy import bearer_token
from ..transport.resume import DEFAULT_GRACE, ResumeLimits
from ..transport.siblings import Siblings
from .common import (
    configure_logging,
    describe_os_error,
    fail,
    read_tokens,
    server_ssl,
    wait_for_stop_signal,
)
from .workers import serve_workers, supervisor_gone

__all__ = ["add_listen_options", "add_store_options", "load_app", "serve_command"]

logger = logging.getLogger("mcp_ws.cli")

APP_NAMES = ("app", "mcp", "server")
"""Attributes tried, in this order, when MODULE is given without ``:APP``."""


def add_listen_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that listens for mcp-ws connections."""
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    listen.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    listen.add_argument("--path", default="/mcp", help="endpoint path (default: %(default)s)")
    listen.add_argument(
        "--allow-origin",
        action="append",
        metavar="PATTERN",
        help="allowed browser Origin, glob patterns, repeatable (default: loopback pages only)",
    )
    listen.add_argument(
        "--token",
        action="append",
        help="require this bearer token; repeatable, each token a principal (visible in "
        "`ps`: prefer --token-file)",
    )
    listen.add_argument(
        "--token-file",
        metavar="PATH",
        help="require one of the bearer tokens in this file (one per line)",
    )
    listen.add_argument(
        "--tls-cert", metavar="PEM", help="serve wss:// with this certificate chain"
    )
    listen.add_argument(
        "--tls-key", metavar="PEM", help="the certificate's private key, if not in --tls-cert"
    )
    listen.add_argument(
        "--web",
        action="store_true",
        help="also serve the chat page at / (the WebSocket endpoint stays at --path)",
    )
    listen.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds in-flight calls get to finish on SIGINT/SIGTERM; meanwhile the "
        "health path says 503 and new connections are refused (default: %(default)s)",
    )
    listen.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes on one port (SO_REUSEPORT), supervised: a worker "
        "that dies is replaced; SIGTERM drains them all (default: %(default)s)",
    )
    listen.add_argument(
        "--resume-grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="how long a connection whose link dropped waits for its client to resume it; "
        "0 turns resume off (default: %(default)s)",
    )
    listen.add_argument(
        "--max-detached",
        type=int,
        default=ResumeLimits().max_detached,
        metavar="N",
        help="connections waiting to be resumed at once, at most; past it the oldest is "
        "ended (default: %(default)s)",
    )
    listen.add_argument(
        "--node",
        metavar="NAME",
        help="the name clients resume with, for a load balancer to route on "
        "(default: the address listened on, HOST:PORT)",
    )
    listen.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    listen.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)  # a worker's parent
    listen.add_argument("--siblings", help=argparse.SUPPRESS)  # the workers' shared folder
    listen.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    listen.add_argument(
        "--health-path",
        default="/healthz",
        metavar="PATH",
        help="answer GET PATH with 200 while serving, 503 while draining; '' turns it "
        "off (default: %(default)s)",
    )
    listen.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """Where a server keeps streamed calls for re-attach (docs/streaming.md)."""
    store = parser.add_argument_group("re-attach")
    store.add_argument(
        "--retain",
        type=float,
        default=DEFAULT_RETAIN,
        metavar="SECONDS",
        help="keep a streamed call's events and outcome this long after it ends, for "
        "clients that re-attach (default: %(default)g)",
    )
    store.add_argument(
        "--retain-bytes",
        type=int,
        default=DEFAULT_MAX_CALL_BYTES,
        metavar="N",
        help="bytes of events kept per call; past it a producer no reader keeps up with "
        "waits (default: %(default)s)",
    )
    store.add_argument(
        "--store",
        metavar="redis://HOST:PORT/DB",
        help="keep streamed calls in Redis, so that any server sharing it serves a "
        "re-attach (needs the redis extra and asyncio; default: in this process)",
    )
    store.add_argument(
        "--no-store",
        action="store_true",
        help="keep no streamed calls: no handles, no re-attach (calls end with their session)",
    )
    store.add_argument(
        "--retain-total-bytes",
        type=int,
        default=DEFAULT_MAX_TOTAL_BYTES,
        metavar="N",
        help="bytes kept for every call together, oldest finished trimmed first "
        "(default: %(default)s)",
    )
    store.add_argument(
        "--retain-unread-bytes",
        type=int,
        metavar="N",
        help="bytes of events the running calls no one reads (their client gone) keep "
        "together; past it their producers wait (default: a quarter of "
        "--retain-total-bytes)",
    )


def _store(args: argparse.Namespace) -> CallStore:
    if args.retain < 0:
        fail("--retain must not be negative", exit_code=2)
    unread = args.retain_unread_bytes
    if min(args.retain_bytes, args.retain_total_bytes, 1 if unread is None else unread) < 1:
        fail(
            "--retain-bytes, --retain-total-bytes and --retain-unread-bytes must be at least 1",
            exit_code=2,
        )
    if args.store is not None:
        if not args.store.startswith(("redis://", "rediss://", "unix://")):
            fail(f"--store takes a redis:// URL, got {args.store!r}", exit_code=2)
        if args.backend != "asyncio":
            fail("--store redis:// needs asyncio (redis-py's async client)", exit_code=2)
        return RedisStore(args.store, retain=args.retain, max_call_bytes=args.retain_bytes)
    return EmbeddedStore(
        retain=args.retain,
        max_call_bytes=args.retain_bytes,
        max_total_bytes=args.retain_total_bytes,
        max_unread_bytes=unread,
    )


def load_app(target: str) -> Server | MCPServer:
    """Import ``MODULE:APP`` (or ``MODULE``, trying ``app``, ``mcp``, ``server``).

    ``APP`` may also be a factory: a callable taking no arguments that returns the app.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or (":" in target and not attribute):
        fail(f"expected MODULE:APP (e.g. my_server:app), got {target!r}", exit_code=2)
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import {module_name!r}: {exc}")
    names = [attribute] if attribute else [n for n in APP_NAMES if hasattr(module, n)]
    if not names:
        fail(
            f"module {module_name!r} has none of {', '.join(APP_NAMES)}; "
            f"say which: {module_name}:NAME"
        )
    app: Any = module
    for part in names[0].split("."):
        if not hasattr(app, part):
            fail(f"module {module_name!r} has no attribute {names[0]!r}")
        app = getattr(app, part)
    if callable(app) and not isinstance(app, Server | MCPServer):
        try:
            app = app()  # a factory, called with no arguments
        except TypeError as exc:
            fail(f"{module_name}:{names[0]} is a callable that cannot be called bare: {exc}")
    if not isinstance(app, Server | MCPServer):
        fail(
            f"{module_name}:{names[0]} is a {type(app).__name__}, "
            "not an MCPServer or a low-level mcp Server"
        )
    return app


def _session_runner(
    args: argparse.Namespace,
) -> tuple[SessionRunner, str, RetainedCalls | None]:
    if args.command == "serve":
        app = load_app(args.target)
        store = False if args.no_store else _store(args)
        retained = retained_calls(app, store=store, grace=args.resume_grace)
        return session_runner(app), args.target, retained
    try:
        argv = shlex.split(args.stdio)
    except ValueError as exc:
        fail(f"cannot parse the --stdio command: {exc}", exit_code=2)
    if not argv:
        fail("the --stdio command is empty", exit_code=2)
    if shutil.which(argv[0]) is None:
        fail(f"command not found: {argv[0]}")
    return stdio_bridge(argv), argv[0], None


async def _stop_reason(supervisor: int | None) -> str:
    """Wait for SIGINT or SIGTERM, or (a worker) for its supervisor to be gone."""
    if supervisor is None:
        return (await wait_for_stop_signal()).name
    why = ""
    async with anyio.create_task_group() as tg:

        async def signalled() -> None:
            nonlocal why
            why = (await wait_for_stop_signal()).name
            tg.cancel_scope.cancel()

        async def orphaned() -> None:
            nonlocal why
            await supervisor_gone(supervisor)
            why = "the supervisor is gone"
            tg.cancel_scope.cancel()

        tg.start_soon(signalled)
        tg.start_soon(orphaned)
    return why


def _resume_limits(max_detached: int) -> ResumeLimits:
    if max_detached < 1:
        fail("--max-detached must be at least 1", exit_code=2)
    per_principal = min(ResumeLimits().max_detached_per_principal, max_detached)
    return ResumeLimits(max_detached=max_detached, max_detached_per_principal=per_principal)


async def serve_command(args: argparse.Namespace) -> int:
    """Run ``serve`` or ``bridge`` until SIGINT or SIGTERM, then shut down gracefully."""
    configure_logging(args.log_level)
    if args.workers < 1:
        fail("--workers must be at least 1", exit_code=2)
    if args.resume_grace < 0:
        fail("--resume-grace must not be negative", exit_code=2)
    _resume_limits(args.max_detached)  # checked before any worker starts
    if args.workers > 1:
        _session_runner(args)  # the app loads: fail here, not in every worker
        return await serve_workers(args)
    run_session, what, retained = _session_runner(args)
    tokens = read_tokens(args.token, args.token_file)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "path": args.path,
        "allowed_origins": args.allow_origin,
        "auth": bearer_token(*tokens) if tokens else None,
        "ssl": server_ssl(args.tls_cert, args.tls_key),
        "shutdown_grace": args.grace,
        "web": args.web,
        "health_path": args.health_path or None,
        "reuse_port": args.reuse_port,
        "resume_grace": args.resume_grace,
        "resume_limits": _resume_limits(args.max_detached),
        "node": args.node,
        "siblings": Siblings(args.siblings, args.worker_index) if args.siblings else None,
    }
    async with contextlib.AsyncExitStack() as stack:
        if retained is not None:  # streamed calls outlive their sessions
            try:
                await stack.enter_async_context(retained.hosting())
            except StoreUnavailable as exc:
                fail(str(exc))
        try:
            server = await stack.enter_async_context(serving_sessions(run_session, **options))
        except OSError as exc:
            fail(f"cannot listen on {args.host}:{args.port}: {describe_os_error(exc)}")
        if retained is not None:
            server.when_drained(retained.stop)
        print(f"mcp-ws: serving {what} at {server.url}", flush=True)
        if server.page_url:
            print(f"mcp-ws: chat page at {server.page_url}", flush=True)
        why = await _stop_reason(args.supervisor)
        print(f"mcp-ws: {why}: shutting down (in-flight calls get {args.grace:g} s)", flush=True)
    print("mcp-ws: stopped", flush=True)
    return 0
