"""FastMCP's client and pydantic-ai's MCP toolset over mcp-ws (`mcp_ws.integrations.fastmcp`),
with the real packages, against a live mcp-ws server: partial results reach the framework
while the tool runs, in order; the final result is whole; stopping early cancels the
server's handler.

asyncio only: FastMCP's ``Client`` starts its session runner as an asyncio task
(``RuntimeError: no running event loop`` on trio). The transport under it is
`mcp_ws.connect`, which the rest of the suite runs on both backends.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import fastmcp
import pytest
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import mcp_ws
from mcp_ws.integrations import STOP
from mcp_ws.integrations.fastmcp import McpWsTransport

from ..livehelpers import live_server

pytestmark = pytest.mark.anyio

TOKENS = "t0 t1 t2 t3 t4 "
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agents"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # see the module docstring


async def test_a_fastmcp_client_gets_partial_results_while_the_tool_runs() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            seen: list[tuple[str, str, int]] = []

            async def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
                text = event.text if isinstance(event, mcp_ws.Delta) else ""
                seen.append((type(event).__name__, text, probe.sent))  # sent so far, server side

            transport = McpWsTransport(server.url, on_partial=on_partial)
            async with fastmcp.Client(transport) as client:
                result = await client.call_tool("generate", {"count": 5, "pause": 0.05})
                plain = await client.call_tool("add", {"a": 2, "b": 3})
    assert [kind for kind, _, _ in seen] == ["Started"] + ["Delta"] * 5
    assert "".join(text for _, text, _ in seen) == TOKENS  # in order, none missing
    assert all(sent < 5 for _, _, sent in seen[1:-1])  # arrived while the tool still ran
    assert result.content[0].text == TOKENS
    assert plain.content[0].text == "5"


async def test_stopping_early_from_the_callback_cancels_the_servers_handler() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            deltas = 0
            with anyio.CancelScope() as scope:

                def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
                    nonlocal deltas
                    if isinstance(event, mcp_ws.Delta):
                        deltas += 1
                        if deltas == 3:
                            scope.cancel()  # the agent has what it needs

                transport = McpWsTransport(server.url, on_partial=on_partial)
                async with fastmcp.Client(transport) as client:
                    await client.call_tool("generate", {"count": 100_000, "pause": 0.01})
            assert scope.cancelled_caught
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
            stopped_at = probe.sent
            await anyio.sleep(0.2)
            assert probe.sent == stopped_at < 100  # the producer really stopped


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call ``generate`` once, then answer with what it returned (no API key needed)."""
    returned = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
    if returned:
        return ModelResponse(parts=[TextPart(f"the tool said: {returned[0].model_response_str()}")])
    assert "generate" in {tool.name for tool in info.function_tools}
    return ModelResponse(parts=[ToolCallPart("generate", {"count": 5, "pause": 0.05})])


async def test_a_pydantic_ai_agent_sees_partial_output_while_the_tool_runs() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            seen: list[tuple[str, int]] = []

            def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
                if isinstance(event, mcp_ws.Delta):
                    seen.append((event.text, probe.sent))

            client = fastmcp.Client(McpWsTransport(server.url, on_partial=on_partial))
            agent = Agent(FunctionModel(scripted_model), toolsets=[MCPToolset(client)])
            async with agent:
                result = await agent.run("stream, please")
    assert result.output == f"the tool said: {TOKENS}"
    assert "".join(text for text, _ in seen) == TOKENS
    assert all(sent < 5 for _, sent in seen[:-1])


class Enough(Exception):
    """Raised by a callback that has seen what it needed."""


async def test_an_exception_from_the_callback_cancels_the_call_and_propagates() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):

            def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> None:
                if isinstance(event, mcp_ws.Delta) and event.seq == 3:
                    raise Enough

            transport = McpWsTransport(server.url, on_partial=on_partial)
            with pytest.raises(Exception) as caught:
                async with fastmcp.Client(transport) as client:
                    await client.call_tool("generate", {"count": 100_000, "pause": 0.01})
            assert (
                caught.group_contains(Enough)
                if isinstance(caught.value, BaseExceptionGroup)
                else isinstance(caught.value, Enough)
            )
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()


def test_a_url_that_is_not_a_websocket_is_refused() -> None:
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        McpWsTransport("http://127.0.0.1:1/mcp")


BLOCK_EXTRAS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('fastmcp', 'pydantic_ai', 'agents', 'langgraph', 'langchain_core'):
            raise ImportError(f'{name} is not installed (blocked)')
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_core_works_without_any_extra_and_names_the_missing_one() -> None:
    code = BLOCK_EXTRAS + (
        "import anyio, mcp_ws, mcp_ws.integrations\n"
        "from mcp_ws.cli.demo_app import build_demo_app\n"
        "async def main():\n"
        "    async with mcp_ws.serving(build_demo_app(), port=0) as server:\n"
        "        async with mcp_ws.connect(server.url) as (read, write):\n"
        "            from mcp import ClientSession\n"
        "            async with ClientSession(read, write) as s:\n"
        "                await s.initialize()\n"
        "                print(len((await s.list_tools()).tools) > 0)\n"
        "anyio.run(main)\n"
        "for name in ('fastmcp', 'langgraph', 'openai_agents'):\n"
        "    try:\n"
        "        __import__(f'mcp_ws.integrations.{name}')\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "True",
        "mcp_ws.integrations.fastmcp needs FastMCP: pip install 'mcp-ws-streaming[fastmcp]'",
        "mcp_ws.integrations.langgraph needs LangGraph: pip install 'mcp-ws-streaming[langgraph]'",
        "mcp_ws.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'mcp-ws-streaming[openai-agents]'",
    ]


async def test_stop_ends_the_call_with_what_streamed_and_the_agent_goes_on() -> None:
    """`STOP` from the callback: the server's handler is cancelled, the tool call returns
    what streamed so far (marked stopped), and the agent answers from it."""
    with anyio.fail_after(30):
        async with live_server() as (server, probe):
            seen: list[str] = []

            def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
                if isinstance(event, mcp_ws.Delta):
                    seen.append(event.text)
                    if len(seen) == 3:
                        return STOP
                return None

            def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
                returned = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
                if returned:
                    return ModelResponse(parts=[TextPart(returned[0].model_response_str())])
                return ModelResponse(
                    parts=[ToolCallPart("generate", {"count": 100_000, "pause": 0.01})]
                )

            client = fastmcp.Client(McpWsTransport(server.url, on_partial=on_partial))
            agent = Agent(FunctionModel(model), toolsets=[MCPToolset(client)])
            async with agent:
                result = await agent.run("three tokens are enough")
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
            assert probe.sent < 100
    assert seen == ["t0 ", "t1 ", "t2 "]
    assert result.output == "t0 t1 t2 "


async def test_stop_gives_the_fastmcp_caller_the_streamed_part_marked_stopped() -> None:
    with anyio.fail_after(30):
        async with live_server() as (server, probe):

            def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
                return STOP if isinstance(event, mcp_ws.Delta) and event.seq == 2 else None

            transport = McpWsTransport(server.url, on_partial=on_partial)
            async with fastmcp.Client(transport) as client:
                result = await client.call_tool("generate", {"count": 100_000, "pause": 0.01})
                after = await client.call_tool("echo", {"text": "still here"})
            with anyio.fail_after(5):
                await probe.stream_cancelled.wait()
    assert result.content[0].text == "t0 t1 "  # the two deltas before seq 2
    assert result.meta == {mcp_ws.EXTENSION_ID: {"stopped": True}}
    assert not result.is_error
    assert after.content[0].text == "still here"


@pytest.mark.parametrize(
    "name", ["fastmcp_client", "pydantic_ai_agent", "langgraph_graph", "openai_agents_agent"]
)
async def test_the_examples_run(name: str) -> None:
    """examples/agents/: each runs as written and shows partial output."""
    import runpy

    module = runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="example")
    with anyio.fail_after(30):
        outcome = await module["main"]()
    if name == "fastmcp_client":
        assert len(outcome) > 10  # tokens seen while the tool ran
    elif name == "langgraph_graph":
        assert [chunk["text"] for chunk in outcome] == [f"{n} " for n in range(1, 9)]
    elif name == "openai_agents_agent":
        assert "1 2 3 4 5 " in outcome
        assert "6 " not in outcome
    else:
        assert outcome == "The tool got as far as 5; that is enough."
