"""``create_app``: the gateway as an ASGI application (Starlette), served by ``corral serve``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..config import Settings, is_loopback
from ..manager.spec import ManagerSettings
from . import anthropic, dashboard, manager_routes, ollama, openai, responses
from .host_guard import HostGuard
from .settings import GatewaySettings
from .state import Gateway
from .wire_errors import error_response, protocol_for_path
from .wire_log import RequestId, WireLog

__all__ = ["create_app"]

log = logging.getLogger("corral.gateway")


async def health(request: Request) -> Response:
    # The gateway's own liveness: cheap, no upstream call (providers have `corral health`).
    return JSONResponse({"status": "ok"})


async def home(request: Request) -> Response:
    # A browser goes to the dashboard; a tool that probes for Ollama (GET / with no text/html in
    # Accept: curl, the ollama CLI's heartbeat, some editor plugins) gets Ollama's answer.
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/dashboard")
    return PlainTextResponse("Ollama is running")


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    if not gw.authorized(request):
        return error_response("openai", 401, "authentication_error", "missing or invalid API key")
    return Response(gw.observer.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def not_found(request: Request, exc: Exception) -> Response:
    protocol = protocol_for_path(request.url.path)
    return error_response(protocol, 404, "not_found_error", f"no route {request.method} {_shown(request.url.path)}")


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    protocol = protocol_for_path(request.url.path)
    message = f"{request.method} is not allowed on {_shown(request.url.path)}"
    return error_response(protocol, 405, "invalid_request_error", message)


def _shown(path: str, limit: int = 200) -> str:
    """A client's path as it may be echoed: bounded, control characters escaped."""
    text = path[:limit] + ("…" if len(path) > limit else "")
    return text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text


def _discover(settings: Settings) -> Sequence[Any]:
    """GGUF files in [manager] models_dirs become managed models (read at startup)."""
    table = settings.raw.get("manager") or {}
    dirs = table.get("models_dirs") if isinstance(table, dict) else None
    if not dirs:
        return []
    from ..manager.scan import scan_dirs

    listed = [dirs] if isinstance(dirs, str) else list(dirs)
    for d in listed:
        if not Path(d).expanduser().is_dir():
            log.warning("[manager] models_dirs entry %s is not a directory (missing?): no models found there", d)
    return scan_dirs(listed)


def create_app(
    settings: Settings | None = None,
    gateway: GatewaySettings | None = None,
    manager: ManagerSettings | None = None,
) -> Starlette:
    settings = settings if settings is not None else Settings()
    gateway = gateway if gateway is not None else GatewaySettings.from_settings(settings)
    manager = (
        manager if manager is not None else ManagerSettings.from_settings(settings, discovered=_discover(settings))
    )
    scheduler = None
    if manager.enabled:
        from ..manager.bundled import cache_dir
        from ..manager.scheduler import Scheduler

        scheduler = Scheduler(manager, state_dir=manager.state_dir or cache_dir() / "manager")
        if not settings.providers and not gateway.models:
            # Only [manager] configured: names it does not know are unknown, not the zero-setup engine's.
            gateway = replace(gateway, default_route=None)
    gw = Gateway(settings, gateway, scheduler)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gw.aclose()

    # One folder per wire protocol, each with its routes; then the shared ones.
    routes = [
        *openai.ROUTES,
        *anthropic.ROUTES,
        *responses.ROUTES,
        *ollama.ROUTES,
        Route("/running", manager_routes.running, methods=["GET"]),
        Route("/api/models/unload", manager_routes.unload, methods=["POST"]),
        Route("/api/models/unload/{model:path}", manager_routes.unload_one, methods=["POST"]),
        Route("/models/{model:path}/load", manager_routes.load, methods=["POST"]),
        Route("/upstream/{model}/{path:path}", manager_routes.upstream, methods=["GET", "POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/", home, methods=["GET"]),
        Route("/dashboard", dashboard.page, methods=["GET"]),
        Route("/dashboard/api/state", dashboard.state, methods=["GET"]),
        Route("/dashboard/api/chat", dashboard.chat, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    middleware = [Middleware(RequestId)]
    if gateway.wire_log:
        middleware.append(Middleware(WireLog, redact=gw.redact))
    if not gateway.api_keys and is_loopback(gateway.host):
        # No keys on loopback: only local pages and names may call (see host_guard).
        middleware.append(Middleware(HostGuard, allowed_hosts=gateway.allowed_hosts))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    app.state.gateway = gw
    app.state.dashboard = dashboard.DashboardState()
    return app
