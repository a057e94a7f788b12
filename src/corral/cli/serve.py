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
    ollama_port: Annotated[
        int | None,
        typer.Option(
            "--ollama-port",
            help="Also listen on this port (e.g. 11434) for tools that assume Ollama's.",
            min=1,
            max=65535,
        ),
    ] = None,
    ollama_host: Annotated[
        str | None, typer.Option("--ollama-host", help="Address for --ollama-port (default 127.0.0.1).")
    ] = None,
) -> None:
    """Serve the OpenAI, Anthropic and Ollama APIs over the configured providers."""
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
    listeners = [(bind_host, bind_port)]
    if ollama_port is not None:
        listeners.append((ollama_host or "127.0.0.1", ollama_port))
    for where, _ in listeners:
        if not is_loopback(where) and not gateway.api_keys and not allow_unauthenticated:
            fail(
                f"refusing to serve on {where} without API keys: set [gateway] api_keys, "
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
    # The DNS-rebinding guard (keyless gateways on loopback) stands only if every listener is loopback.
    guard_host = next((h for h, _ in listeners if not is_loopback(h)), bind_host)
    app = create_app(settings, replace(gateway, host=guard_host, wire_log=gateway.wire_log or wire_log), manager)
    uvicorn_level = logging.getLevelName(max(level, logging.WARNING)).lower()
    # On SIGTERM answers in flight get this long to finish, then are cut (the models are then
    # stopped and reaped): a long generation cannot hold a shutdown forever.
    grace = max(1, round(gateway.shutdown_timeout))
    err.print(
        f"corral gateway on http://{bind_host}:{bind_port} (OpenAI: /v1, Anthropic: /v1/messages, Ollama: /api)",
        style="dim",
    )
    if ollama_port is None:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=uvicorn_level, access_log=False,
                    timeout_graceful_shutdown=grace)  # fmt: skip
        return
    # A second listener: one server, one app, both sockets (the same routes, keys, limits and metrics).
    configs = [
        uvicorn.Config(app, host=h, port=p, log_level=uvicorn_level, access_log=False, timeout_graceful_shutdown=grace)
        for h, p in listeners
    ]
    try:
        sockets = [c.bind_socket() for c in configs]
    except SystemExit:  # uvicorn says why (address in use…) and exits: keep its message, fail plainly
        fail(f"cannot listen on {', '.join(f'{h}:{p}' for h, p in listeners)}")
    err.print(f"Ollama's port: http://{listeners[1][0]}:{ollama_port}", style="dim")
    uvicorn.Server(configs[0]).run(sockets=sockets)
