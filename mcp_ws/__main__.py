"""``python -m mcp_ws``: the same as the ``mcp-ws`` command."""

from .cli import main

raise SystemExit(main())
