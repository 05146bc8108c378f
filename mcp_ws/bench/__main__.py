"""``python -m mcp_ws.bench ws|stdio|http PORT``: serve the bench app (see `app.main`)."""

from .app import main

main()
