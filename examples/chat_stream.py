"""Token streaming into a terminal chat view: `python examples/chat_stream.py`.

Starts an mcp-ws server with a "chat" tool on loopback, then asks it a question and
prints the answer token by token as it arrives, like a chat UI would.
"""

from __future__ import annotations

import sys

import anyio
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult

import mcp_ws

app = MCPServer("chat")
ANSWER = (
    "mcp-ws carries each tool call on its own stream, so this answer reaches you "
    "token by token while the tool is still writing it."
)


@app.tool()
async def chat(question: str, ctx: Context, delay: float = 0.03) -> CallToolResult:
    """Answer ``question``, one token at a time (a stand-in for a language model)."""
    async with mcp_ws.partial_results(ctx) as out:
        for token in ANSWER.split(" "):
            await out.send_text(token + " ")
            await anyio.sleep(delay)
    return out.result()


async def main(delay: float) -> None:
    async with mcp_ws.serving(app, port=0) as server:
        async with Client(mcp_ws.connect(server.url)) as client:
            question = "What does mcp-ws do?"
            print(f"you: {question}\nbot: ", end="", flush=True)
            async with mcp_ws.stream_tool(
                client, "chat", {"question": question, "delay": delay}
            ) as stream:
                async for event in stream:
                    if isinstance(event, mcp_ws.Delta):
                        print(event.text, end="", flush=True)
            complete = isinstance(stream.outcome, mcp_ws.Completed)
            print(f"\n[{len(stream.text.split())} tokens, complete: {complete}]")


if __name__ == "__main__":
    anyio.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 0.03)
