"""``mcp-ws bench``: the same MCPServer over mcp-ws, the SDK's stdio and streamable HTTP
transports (both protocol eras) and in process, measured side by side in one run.

- `app`: the server every target talks to (``python -m mcp_ws.bench ws|stdio|http``);
- `targets`: how each transport's server is started and a client opened on it;
- `scenarios`: what is measured per target; `scale`: many connections, many streams;
- `runner`: repeats, failures, medians and the headline ratios; `render`: the tables.
"""

from .runner import Headline, Report, run_bench
from .scenarios import Sizes

__all__ = ["Headline", "Report", "Sizes", "run_bench"]
