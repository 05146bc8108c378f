"""The OpenAI Agents SDK over mcp-ws (`mcp_ws.integrations.openai_agents.MCPServerMcpWs`),
with the real package and a scripted model (no API key, tracing off, no network):
partial results reach ``on_partial`` while the tool runs, in order; the agent gets the
whole result; ``STOP`` ends the call with what streamed and cancels the server's handler.

asyncio only: the Agents SDK's runner is asyncio code (it creates asyncio tasks). The
session under it is `mcp_ws.connect`, tested on both backends elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

import mcp_ws
from mcp_ws.integrations import STOP
from mcp_ws.integrations.openai_agents import MCPServerMcpWs

from ..livehelpers import live_server

pytestmark = pytest.mark.anyio

set_tracing_disabled(True)  # no trace export: the tests talk to loopback only


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


class ScriptedModel(Model):
    """First turn: call ``tool`` with ``arguments``; second: answer with its output."""

    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        self.tool = tool
        self.arguments = arguments
        self.tools_seen: list[str] = []

    async def get_response(
        self,
        system_instructions: Any,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        items = input if isinstance(input, list) else []
        outputs = [
            i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if not outputs:
            self.tools_seen = [tool.name for tool in tools]
            call = ResponseFunctionToolCall(
                type="function_call",
                id="fc_1",
                call_id="call_1",
                name=self.tool,
                arguments=json.dumps(self.arguments),
                status="completed",
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = str(outputs[-1]["output"])
        message = ResponseOutputMessage(
            type="message",
            id="msg_1",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def test_an_agent_sees_partial_output_while_the_tool_runs() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            seen: list[tuple[str, int]] = []

            def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
                if isinstance(event, mcp_ws.Delta):
                    seen.append((event.text, probe.sent))

            model = ScriptedModel("generate", {"count": 5, "pause": 0.05})
            async with MCPServerMcpWs(server.url, on_partial=on_partial) as mcp:
                agent = Agent(name="streamer", model=model, mcp_servers=[mcp])
                result = await Runner.run(agent, "stream, please")
    assert "generate" in model.tools_seen
    assert "".join(text for text, _ in seen) == "t0 t1 t2 t3 t4 "
    assert all(sent < 5 for _, sent in seen[:-1])  # while the tool still ran
    assert "t0 t1 t2 t3 t4 " in result.final_output


async def test_stop_ends_the_call_with_what_streamed_and_cancels_the_handler() -> None:
    def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
        return STOP if isinstance(event, mcp_ws.Delta) and event.seq == 3 else None

    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            model = ScriptedModel("generate", {"count": 100_000, "pause": 0.01})
            async with MCPServerMcpWs(server.url, on_partial=on_partial) as mcp:
                agent = Agent(name="stopper", model=model, mcp_servers=[mcp])
                result = await Runner.run(agent, "three tokens are enough")
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
            assert probe.sent < 100
    assert "t0 t1 t2 " in result.final_output  # the deltas up to the one that said STOP
    assert "t3" not in result.final_output


async def test_connect_and_cleanup_as_the_sdk_servers_do() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, _):
            mcp = MCPServerMcpWs(server.url, name="tests")
            assert mcp.name == "tests"
            with pytest.raises(RuntimeError, match="not connected"):
                await mcp.list_tools()
            await mcp.connect()
            try:
                tools = {tool.name for tool in await mcp.list_tools()}
                assert {"add", "generate"} <= tools
                result = await mcp.call_tool("add", {"a": 2, "b": 3})
                assert result.content[0].text == "5"  # type: ignore[union-attr]
            finally:
                await mcp.cleanup()
            assert mcp.session is None
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        MCPServerMcpWs("http://127.0.0.1:1/mcp")
