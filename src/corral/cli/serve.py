"""``corral serve``: the OpenAI- and Anthropic-compatible gateway."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..config import is_loopback, load_settings
from .common import ConfigOpt, err, fail, run


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 4000).", min=0, max=65535)] = None,
    allow_unauthenticated: Annotated[
        bool, typer.Option("--allow-unauthenticated", help="Bind a non-loopback address without API keys.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
    llama_swap_config: Annotated[
        Path | None,
        typer.Option("--llama-swap-config", help="A llama-swap config.yaml whose models the manager runs."),
    ] = None,
    wire_log: Annotated[
        bool,
        typer.Option("--wire-log", help="Log every request and answer with headers and bodies (keys masked)."),
    ] = False,
) -> None:
    """Serve the OpenAI and Anthropic APIs over the configured providers."""
    try:
        import uvicorn

        from ..gateway import create_app
        from ..gateway.settings import GatewaySettings
    except ImportError as exc:
        fail(f"corral serve needs the server extra: pip install 'corral[server]' ({exc.name} is missing)")
    settings = run(lambda: load_settings(config))
    gateway = run(lambda: GatewaySettings.from_settings(settings))
    bind_host = host or gateway.host
    bind_port = gateway.port if port is None else port
    if not is_loopback(bind_host) and not gateway.api_keys and not allow_unauthenticated:
        fail(
            f"refusing to serve on {bind_host} without API keys: set [gateway] api_keys, "
            "or pass --allow-unauthenticated if the network is trusted"
        )
    level = getattr(logging, log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s")
    from ..manager.spec import ManagerSettings, check_engine_args

    manager = None
    if llama_swap_config is not None:
        from ..manager.llamaswap_import import load_manager_settings

        manager, warnings = run(lambda: load_manager_settings(settings, llama_swap_config))
        for warning in warnings:  # what corral does not honour, said once at startup
            err.print(f"warning: {warning}", style="yellow", markup=False)
    run(lambda: check_engine_args(manager or ManagerSettings.from_settings(settings)))
    app = create_app(settings, replace(gateway, host=bind_host, wire_log=gateway.wire_log or wire_log), manager)
    err.print(f"corral gateway on http://{bind_host}:{bind_port} (OpenAI: /v1, Anthropic: /v1/messages)", style="dim")
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        log_level=logging.getLevelName(max(level, logging.WARNING)).lower(),
        access_log=False,
        # On SIGTERM answers in flight get this long to finish, then are cut (the models are then
        # stopped and reaped): a long generation cannot hold a shutdown forever.
        timeout_graceful_shutdown=max(1, round(gateway.shutdown_timeout)),
    )
