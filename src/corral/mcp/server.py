"""The MCP server: the SDK's ``MCPServer`` with corral's tools, and the two ways to run it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from .. import __version__
from ..config import Secret, Settings
from ..redaction import Redactor
from .pool import ClientPool
from .tools import CorralTools

__all__ = ["TOOL_NAMES", "build_server", "run_http", "run_stdio"]

TOOL_NAMES = (
    "chat_completion",
    "stream_chat",
    "list_available_models",
    "get_system_info",
    "benchmark_model",
    "validate_model",
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

INSTRUCTIONS = (
    "corral: local llama.cpp models (and configured cloud providers) as tools. "
    "list_available_models shows what can be asked; chat_completion and stream_chat ask it."
)


def build_server(
    settings: Settings, *, extra_secrets: Sequence[Secret | None] = (), log_level: LogLevel = "WARNING"
) -> tuple[MCPServer[Any], ClientPool]:
    """The server and the client pool its tools use; the caller closes the pool (``aclose``)."""
    pool = ClientPool(settings)
    redact = Redactor.from_settings(settings, extra_secrets)  # keys, URL passwords and their Basic-auth forms
    tools = CorralTools(pool, redact)
    server: MCPServer[Any] = MCPServer("corral", version=__version__, instructions=INSTRUCTIONS, log_level=log_level)
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    generating = ToolAnnotations(read_only_hint=True, open_world_hint=True)
    server.add_tool(tools.chat_completion, title="Chat completion", annotations=generating)
    server.add_tool(tools.stream_chat, title="Streamed chat completion", annotations=generating)
    server.add_tool(tools.list_available_models, title="List models", annotations=read_only)
    server.add_tool(tools.get_system_info, title="System info", annotations=read_only)
    server.add_tool(tools.benchmark_model, title="Benchmark a model", annotations=read_only)
    server.add_tool(tools.validate_model, title="Validate a model", annotations=read_only)
    return server, pool


async def run_stdio(settings: Settings, *, log_level: LogLevel = "WARNING") -> None:
    """Serve on stdin/stdout until the client closes the pipe."""
    server, pool = build_server(settings, log_level=log_level)
    try:
        await server.run_stdio_async()
    finally:
        await pool.aclose()


async def run_http(
    settings: Settings,
    *,
    host: str,
    port: int,
    api_key: Secret | None,
    allowed_hosts: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    log_level: LogLevel = "WARNING",
) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until interrupted."""
    import uvicorn

    from .http import OnShutdown, http_app

    server, pool = build_server(settings, extra_secrets=[api_key], log_level=log_level)
    app = http_app(server, host=host, api_key=api_key, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)
    app = OnShutdown(app, pool.aclose)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await pool.aclose()  # a no-op after OnShutdown; here for a failed start
