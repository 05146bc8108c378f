"""What the subcommands share: errors, tokens, TLS, logging, signals, the event loop."""

from __future__ import annotations

import errno
import logging
import os
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio

__all__ = [
    "TOKEN_ENV",
    "CommandError",
    "client_ssl",
    "configure_logging",
    "describe_os_error",
    "fail",
    "read_token",
    "run",
    "server_ssl",
    "wait_for_stop_signal",
]

TOKEN_ENV = "MCP_WS_TOKEN"
"""Environment variable holding the bearer token when neither --token nor --token-file is given."""


class CommandError(Exception):
    """A failure the user can fix; printed as ``mcp-ws: <message>`` with exit code 1 (or 2)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, *, exit_code: int = 1) -> NoReturn:
    """Stop the command with a clear message."""
    raise CommandError(message, exit_code=exit_code)


def read_tokens(tokens: list[str] | None, token_file: str | None) -> list[str]:
    """A server's bearer tokens: each ``--token`` (repeatable), each non-empty line of
    ``--token-file``, or ``$MCP_WS_TOKEN``. Each token is a principal (resume binds a
    connection to the one that opened it)."""
    if tokens and token_file is not None:
        fail("give --token or --token-file, not both", exit_code=2)
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read the token file {token_file}: {exc.strerror or exc}")
        found = [line.strip() for line in text.splitlines() if line.strip()]
        if not found:
            fail(f"the token file {token_file} is empty")
        return found
    if tokens:
        if not all(tokens):
            fail("a token is empty", exit_code=2)
        return list(tokens)
    from_env = os.environ.get(TOKEN_ENV)
    return [from_env] if from_env else []


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The bearer token from ``--token``, ``--token-file`` or ``$MCP_WS_TOKEN``."""
    if token is not None and token_file is not None:
        fail("give --token or --token-file, not both", exit_code=2)
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            fail(f"cannot read the token file {token_file}: {exc.strerror or exc}")
        if not token:
            fail(f"the token file {token_file} is empty")
    elif token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and not token:
        fail("the token is empty", exit_code=2)
    return token


def server_ssl(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A TLS context for ``--tls-cert`` (and ``--tls-key``, unless the cert file has it)."""
    if cert is None:
        if key is not None:
            fail("--tls-key needs --tls-cert", exit_code=2)
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        fail(f"cannot load the TLS certificate {cert}: {exc}")
    return context


def client_ssl(url: str, cafile: str | None) -> ssl.SSLContext | None:
    """The client's TLS context: system roots, plus ``--cafile`` if given."""
    if cafile is not None and not url.startswith("wss://"):
        fail("--cafile is for wss:// URLs", exit_code=2)
    if cafile is None:
        return None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        fail(f"cannot load the CA file {cafile}: {exc}")


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (the command's own output goes to stdout)."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level.lower() != "debug":  # one line per handshake is noise below debug
        logging.getLogger("websockets").setLevel(logging.WARNING)


def describe_os_error(exc: BaseException) -> str:
    """An ``OSError`` as a short phrase (``address already in use``, ``connection refused``).

    Looks through anyio's "all connection attempts failed" to the attempts' errors.
    """
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        return describe_os_error(cause.exceptions[0])
    if isinstance(cause, OSError):
        return describe_os_error(cause)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return "address already in use"
    text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return text[0].lower() + text[1:]


async def wait_for_stop_signal() -> signal.Signals:
    """Wait for SIGINT or SIGTERM; returns the signal."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            return signal.Signals(received)
    raise RuntimeError("the signal receiver ended")  # pragma: no cover - it never does


def run(main: Callable[..., Awaitable[int]], *args: Any, backend: str = "asyncio") -> int:
    """Run ``main(*args)`` on ``backend``; a `CommandError` becomes its message and code."""
    try:
        return anyio.run(main, *args, backend=backend)
    except CommandError as exc:
        print(f"mcp-ws: {exc}", file=sys.stderr)
        return exc.exit_code
    except BaseExceptionGroup as group:
        errors, rest = group.split(CommandError)
        if errors is None or rest is not None:
            raise
        first = _first_leaf(errors)
        print(f"mcp-ws: {first}", file=sys.stderr)
        return first.exit_code
    except KeyboardInterrupt:
        return 130


def _first_leaf(group: BaseExceptionGroup[CommandError]) -> CommandError:
    first = group.exceptions[0]
    return first if isinstance(first, CommandError) else _first_leaf(first)
