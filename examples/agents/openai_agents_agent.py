"""An OpenAI Agents SDK agent whose MCP server speaks mcp-ws, seeing the tool's output
while it runs: `python examples/agents/openai_agents_agent.py` (needs
`pip install 'mcp-ws-streaming[openai-agents]'`; no API key: the model is scripted and
tracing is off).

The scripted model asks for the demo server's ``count`` tool; ``on_partial`` prints the
numbers as they stream and returns ``STOP`` at 5; the agent answers from what the tool
returned.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
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
from mcp_ws.cli.demo_app import build_demo_app
from mcp_ws.integrations import STOP
from mcp_ws.integrations.openai_agents import MCPServerMcpWs


class ScriptedModel(Model):
    """Call ``count`` first; then say what it returned."""

    async def get_response(
        self, system_instructions: Any, input: Any, model_settings: Any, tools: Any,
        output_schema: Any, handoffs: Any, tracing: Any, **kwargs: Any,
    ) -> ModelResponse:
        items = input if isinstance(input, list) else []
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if not outputs:
            call = ResponseFunctionToolCall(
                type="function_call", id="fc_1", call_id="call_1", name="count",
                arguments=json.dumps({"to": 1000, "pause": 0.02}), status="completed",
            )
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = f"The count got this far before I stopped it: {outputs[-1]['output']}"
        message = ResponseOutputMessage(
            type="message", id="msg_1", role="assistant", status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def on_partial(event: mcp_ws.Started | mcp_ws.Delta) -> object:
    if isinstance(event, mcp_ws.Delta):
        print(f"  partial output: {event.text.strip()}")
        if event.text.strip() == "5":
            return STOP  # enough: the call ends now, with what streamed
    return None


async def main() -> str:
    set_tracing_disabled(True)
    async with mcp_ws.serving(build_demo_app(), port=0) as server:
        async with MCPServerMcpWs(server.url, on_partial=on_partial) as mcp:
            agent = Agent(name="counter", model=ScriptedModel(), mcp_servers=[mcp])
            result = await Runner.run(agent, "count for me, but 5 is enough")
    print(result.final_output)
    return str(result.final_output)


if __name__ == "__main__":
    anyio.run(main)  # the Agents SDK runs on asyncio
