"""A pydantic-ai agent that calls a streaming tool over mcp-ws and sees its output while it
runs: `python examples/agents/pydantic_ai_agent.py` (needs
`pip install 'mcp-ws-streaming[pydantic-ai]'`; no API key: the model is scripted).

The scripted model asks for the demo server's ``count`` tool; ``on_partial`` watches the
numbers as they stream and returns ``STOP`` as soon as it has seen 5: the server's
handler is cancelled, the tool call returns what streamed so far, and the agent goes on
and answers from it.
"""

from __future__ import annotations

import anyio
import fastmcp
from pydantic_ai import Agent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import mcp_ws
from mcp_ws.cli.demo_app import build_demo_app
from mcp_ws.integrations import STOP
from mcp_ws.integrations.fastmcp import McpWsTransport

seen: list[str] = []


def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
    if isinstance(event, mcp_ws.Delta):
        seen.append(event.text.strip())
        print(f"  partial output: {event.text.strip()}")
        if len(seen) == 5:
            return STOP  # enough: the tool call ends now, with what it streamed
    return None


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Ask for ``count`` first; answer from what the tool returned."""
    returned = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
    if not returned:
        return ModelResponse(parts=[ToolCallPart("count", {"to": 1000, "pause": 0.02})])
    numbers = returned[0].model_response_str().split()
    return ModelResponse(parts=[TextPart(f"The tool got as far as {numbers[-1]}; that is enough.")])


async def main() -> str:
    async with mcp_ws.serving(build_demo_app(), port=0) as server:
        client = fastmcp.Client(McpWsTransport(server.url, on_partial=on_partial))
        agent = Agent(FunctionModel(scripted_model), toolsets=[MCPToolset(client)])
        async with agent:
            result = await agent.run("count for me, but 5 is enough")
        print(result.output)
        return result.output


if __name__ == "__main__":
    anyio.run(main)
