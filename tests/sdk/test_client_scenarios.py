"""Client behaviour scenarios (vectors/clients/): the same steps, run by the Python
client here and by the TypeScript one (js/test/client-scenarios.test.ts) against the
same test app, must see the same events. The format is in vectors/README.md."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

import mcp_ws

from ..apps import Probe, build_app
from ..cutproxy import CutProxy, cut_proxy
from .test_streaming import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CLIENTS = Path(__file__).resolve().parents[2] / "vectors" / "clients"


def load() -> list[dict[str, Any]]:
    """Every client scenario, in file order, each with its ``id`` (``area/name``)."""
    found: list[dict[str, Any]] = []
    for path in sorted(CLIENTS.glob("*.json")):
        for scenario in json.loads(path.read_text())["scenarios"]:
            found.append({**scenario, "id": f"{path.stem}/{scenario['name']}"})
    return found


SCENARIOS = load()


def seen(event: mcp_ws.StreamEvent) -> list[Any]:
    """An event as the scenarios write it."""
    if isinstance(event, mcp_ws.Started):
        return ["start", event.handle]
    if isinstance(event, mcp_ws.Delta):
        return ["delta", event.seq, event.text]
    if isinstance(event, mcp_ws.Completed):
        return ["completed", text_of(event.result)]
    error = event.error
    if isinstance(error, MCPError):
        return ["failed", error.error.code, error.error.message]
    return ["failed", None, str(error)]


def mismatches(expected: list[list[Any]], actual: list[list[Any]], handles: dict[str, Any]) -> str:
    """Why ``actual`` does not match ``expected`` ("" when it does). ``["deltas", first,
    last]`` stands for the deltas ``first`` to ``last`` in order (``last`` null: any
    number, none included); a null text or message is not compared; ``"$name"`` is the
    handle of the stream step called ``name``."""
    at = 0
    for want in expected:
        if want[0] == "deltas":
            first, last = want[1], want[2]
            seq = first
            while (
                at < len(actual)
                and actual[at][0] == "delta"
                and actual[at][1] == seq
                and (last is None or seq <= last)
            ):
                at += 1
                seq += 1
            if last is not None and seq != last + 1:
                return f"deltas {first} to {last}: stopped at {seq}, {actual[at : at + 1]}"
            continue
        if at >= len(actual):
            return f"{want}: nothing more came"
        got = actual[at]
        wanted = [
            handles.get(v[1:], v) if isinstance(v, str) and v.startswith("$") else v for v in want
        ]
        if len(got) != len(wanted) or any(
            w is not None and w != g for w, g in zip(wanted, got, strict=True)
        ):
            return f"event {at}: expected {wanted}, got {got}"
        at += 1
    if at != len(actual):
        return f"more than expected: {actual[at:]}"
    return ""


@asynccontextmanager
async def session_to(url: str) -> AsyncIterator[ClientSession]:
    async with (
        mcp_ws.connect(url, resume=False) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def stream_step(
    step: dict[str, Any], server: mcp_ws.McpWsServer, proxy: CutProxy, handles: dict[str, Any]
) -> list[list[Any]]:
    """``stream``: a call of ``tool``; ``vanish_after`` N deltas its link is cut (no
    cancel reaches the server), ``leave_after`` N deltas its caller leaves (a cancel)."""
    events: list[list[Any]] = []
    vanish, leave = step.get("vanish_after"), step.get("leave_after")
    url = proxy.url() if vanish is not None else server.url
    async with session_to(url) as session:
        async with mcp_ws.stream_tool(session, step["tool"], step["arguments"]) as stream:
            async for event in stream:
                events.append(seen(event))
                if isinstance(event, mcp_ws.Started) and "name" in step:
                    handles[step["name"]] = event.handle
                deltas = sum(1 for e in events if e[0] == "delta")
                if isinstance(event, mcp_ws.Delta) and deltas in (vanish, leave):
                    if deltas == vanish:
                        proxy.cut()
                    break
    return events


async def attach_step(
    step: dict[str, Any], reader: ClientSession, handles: dict[str, Any]
) -> list[list[Any]]:
    """``attach``: read ``handle`` after ``after``; ``leave_after`` N deltas the reader
    leaves, ``cancel_after`` N deltas it cancels the call and reads on to the end."""
    handle = step["handle"]
    if isinstance(handle, str) and handle.startswith("$"):
        handle = handles[handle[1:]]
    events: list[list[Any]] = []
    leave, cancel = step.get("leave_after"), step.get("cancel_after")
    async with mcp_ws.attach(reader, handle, step.get("after")) as stream:
        async for event in stream:
            events.append(seen(event))
            deltas = sum(1 for e in events if e[0] == "delta")
            if isinstance(event, mcp_ws.Delta) and deltas == leave:
                break
            if isinstance(event, mcp_ws.Delta) and deltas == cancel:
                stream.cancel()
    return events


async def play(scenario: dict[str, Any]) -> list[str]:
    """Run ``scenario`` against a fresh server; the steps that did not match, and why."""
    failures: list[str] = []
    handles: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            mcp_ws.serving(build_app(Probe()), port=0, shutdown_grace=0.2)
        )
        proxy = await stack.enter_async_context(cut_proxy(server.port))
        reader = await stack.enter_async_context(session_to(server.url))
        for number, step in enumerate(scenario["steps"]):
            with anyio.fail_after(20):
                if step["do"] == "stream":
                    events = await stream_step(step, server, proxy, handles)
                elif step["do"] == "attach":
                    events = await attach_step(step, reader, handles)
                else:
                    raise ValueError(f"unknown step {step['do']!r}")
            why = mismatches(step["events"], events, handles)
            if why:
                failures.append(f"step {number} ({step['do']}): {why}")
    return failures


def test_the_client_scenario_files_are_named_once_and_cover_attach() -> None:
    assert len({s["id"] for s in SCENARIOS}) == len(SCENARIOS) >= 6
    assert {step["do"] for s in SCENARIOS for step in s["steps"]} == {"stream", "attach"}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
async def test_client_scenario(anyio_backend: str, scenario: dict[str, Any]) -> None:
    assert await play(scenario) == []


async def test_a_client_scenario_whose_expectation_is_wrong_fails(anyio_backend: str) -> None:
    scenario = copy.deepcopy(next(s for s in SCENARIOS if s["name"] == "read-again-after-a-cursor"))
    scenario["steps"][1]["events"][1] = ["delta", 4, "t4 "]  # the text of seq 5
    assert (await play(scenario)) == [
        "step 1 (attach): event 1: expected ['delta', 4, 't4 '], got ['delta', 4, 't3 ']"
    ]
