"""``corral mcp``: corral's providers as tools for any MCP client (Claude Code, Claude Desktop, …).

Built on the official ``mcp`` SDK, an optional extra (``pip install 'corral[mcp]'``): nothing here is
imported by ``import corral``. Layout:

    schemas.py   pydantic input/output models: the tools' JSON schemas and structured results
    pool.py      one lazily created corral client per provider, closed (engine reaped) on shutdown
    system.py    CPU, RAM and GPU facts of this machine
    tools.py     the six tool bodies, argument checks and error translation
    server.py    the MCPServer with the tools registered; stdio entry point
    http.py      streamable HTTP: loopback bind, Host/Origin checks (the SDK's), bearer key
"""

from __future__ import annotations

from .server import build_server, run_http, run_stdio

__all__ = ["build_server", "run_http", "run_stdio"]
