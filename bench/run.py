"""The benchmark runner from a checkout: ``python bench/run.py [--quick] [--json] ...``.

The same as ``mcp-ws bench`` (the runner lives in ``mcp_ws.bench`` so that an installed
package has it); see ``bench/RESULTS.md`` for the latest figures and their history.
"""

import sys

from mcp_ws.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
