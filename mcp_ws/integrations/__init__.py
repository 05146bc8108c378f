"""mcp-ws inside agent frameworks, each an optional extra; the core never imports them.

- `mcp_ws.integrations.fastmcp`: ``McpWsTransport``, a FastMCP client transport
  (``pip install 'mcp-ws-streaming[fastmcp]'``); pydantic-ai's ``MCPToolset`` takes a
  FastMCP client built on it (``[pydantic-ai]``).
- `mcp_ws.integrations.langgraph`: ``load_tools(session)``, LangChain tools whose
  partial results go to the LangGraph run's custom stream (``[langgraph]``).
- `mcp_ws.integrations.openai_agents`: ``MCPServerMcpWs``, an ``agents.mcp.MCPServer``
  for ``Agent(mcp_servers=[...])`` (``[openai-agents]``).

Every integration takes ``on_partial(event)``: called with each `mcp_ws.Started` and
`mcp_ws.Delta` of every tool call made through it, in order, while the tool runs (a
coroutine function is awaited). The call's stream credit goes back only once the
callback returned, so a slow callback slows that tool's producer and nothing else.
Returning `STOP` ends the call at once (the server's handler is cancelled) and the call
returns what streamed so far, marked ``stopped``, so the agent goes on with it; an
exception from the callback cancels the call and propagates.
"""

from ._partials import STOP, OnPartial

__all__ = ["STOP", "OnPartial"]
