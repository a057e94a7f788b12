"""``corral mcp``: the configured providers as MCP tools, over stdio or streamable HTTP."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Annotated, Any, cast

import typer

from ..config import Secret, Settings, is_loopback, load_settings
from ..errors import ConfigurationError
from .common import ConfigOpt, err, fail, run

DEFAULT_PORT = 4100
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _installed_mcp() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mcp")
    except PackageNotFoundError:
        return None


def _section(settings: Settings) -> Mapping[str, Any]:
    section = settings.raw.get("mcp", {})
    if not isinstance(section, Mapping):
        raise ConfigurationError("[mcp] must be a table")
    for key in ("allowed_hosts", "allowed_origins"):
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f"mcp.{key} must be a list of strings")
    for key in ("api_key", "host"):
        if key in section and not isinstance(section[key], str):
            raise ConfigurationError(f"mcp.{key} must be a string")
    port = section.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"mcp.port must be a port number, got {port!r}")
    return section


def mcp(
    config: ConfigOpt = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP at /mcp instead of stdio.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Address to bind with --http (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", help=f"Port with --http (default {DEFAULT_PORT}).", min=0, max=65535)
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="CORRAL_MCP_KEY",
            show_envvar=True,
            help="With --http: require 'Authorization: Bearer KEY' (else mcp.api_key in the config).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "warning",
) -> None:
    """Serve the configured models as MCP tools (chat_completion, stream_chat, list_available_models,
    get_system_info, benchmark_model, validate_model) to Claude Code, Claude Desktop or any MCP client."""
    try:
        import anyio

        from ..mcp import run_http, run_stdio
    except ImportError as exc:
        installed = _installed_mcp()
        if installed and installed.split(".")[0] == "1":
            # corral uses the 2.x API (MCPServer, mcp_types), which 1.x lacks
            fail(f"corral mcp needs mcp 2 (installed: {installed}): pip install 'corral[mcp]' 'mcp>=2'")
        fail(f"corral mcp needs the mcp extra: pip install 'corral[mcp]' ({exc.name} is missing)")
    level = log_level.upper()
    if level not in _LEVELS:
        fail(f"--log-level must be one of {', '.join(_LEVELS).lower()}, got {log_level!r}")
    settings = run(lambda: load_settings(config))
    section = run(lambda: _section(settings))
    if not http:
        if host is not None or port is not None:
            fail("--host and --port need --http")
        if sys.stdin.isatty():  # someone typed it: stdout is for JSON-RPC, so say so on stderr
            err.print("corral mcp speaks MCP on stdin/stdout: register it in an MCP client (Ctrl-C ends)", style="dim")
        run(lambda: anyio.run(lambda: run_stdio(settings, log_level=cast(Any, level))))
        return
    bind_host = host or str(section.get("host", "127.0.0.1"))
    bind_port = int(section.get("port", DEFAULT_PORT)) if port is None else port
    key_text = api_key or section.get("api_key") or None
    key = Secret(key_text) if key_text else None
    if not is_loopback(bind_host) and key is None:
        fail(
            f"refusing to serve MCP on {bind_host} without a key: pass --api-key "
            "(or set CORRAL_MCP_KEY, or [mcp] api_key)"
        )
    err.print(
        f"corral mcp on http://{bind_host}:{bind_port}/mcp" + (" (bearer key required)" if key else ""),
        style="dim",
    )
    run(
        lambda: anyio.run(
            lambda: run_http(
                settings,
                host=bind_host,
                port=bind_port,
                api_key=key,
                allowed_hosts=section.get("allowed_hosts", []),
                allowed_origins=section.get("allowed_origins", []),
                log_level=cast(Any, level),
            )
        )
    )
