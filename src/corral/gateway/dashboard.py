"""The dashboard: one static page (``/dashboard``) and the two JSON routes it calls.

``GET /dashboard/api/state`` — providers and their health, managed models with state and memory,
the last requests (the request log's fields: no content, no keys). ``POST /dashboard/api/chat`` — the
try-it box: an OpenAI-shaped chat body plus an optional ``provider``, answered as a stream of small
JSON events. Both need the gateway's key when one is configured; the page itself holds no data.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from .. import __version__
from ..async_client import AsyncClient
from ..config import public_url
from ..errors import CorralError
from ..events import ContentDelta, Done, ReasoningDelta, ToolCallEnd
from .observe import RequestRecord
from .openai.chat_wire import chat_request_from_openai
from .state import Gateway
from .wire_errors import WireError, error_response, from_corral_error

__all__ = ["DashboardState", "chat", "page", "state"]

HEALTH_TIMEOUT = 2.0  # seconds a provider gets to answer the dashboard's health check
HEALTH_CACHE = 3.0  # several open dashboards poll: a provider is asked at most this often


@dataclass(slots=True)
class DashboardState:
    """Per app: when it started, and the providers' last health answers."""

    started: float = field(default_factory=time.time)
    health_at: float = 0.0
    health: list[dict[str, Any]] | None = None
    lock: asyncio.Lock | None = None


def _gateway(request: Request) -> Gateway | Response:
    gw: Gateway = request.app.state.gateway
    if not gw.authorized(request):
        return error_response("openai", 401, "authentication_error", "missing or invalid API key")
    return gw


def _dashboard(request: Request) -> DashboardState:
    found: DashboardState = request.app.state.dashboard
    return found


@functools.cache
def _page_html() -> str:
    return resources.files("corral.gateway").joinpath("static/dashboard.html").read_text(encoding="utf-8")


async def page(request: Request) -> Response:
    html = _page_html()
    # The page calls only this origin; no framing by other sites.
    headers = {"Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
               "script-src 'unsafe-inline'; frame-ancestors 'none'", "Cache-Control": "no-store"}  # fmt: skip
    return HTMLResponse(html, headers=headers)


# -- state ----------------------------------------------------------------------------------------------------
def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process, from /proc (Linux); None where that cannot be read."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


async def _provider_health(name: str | None, client: AsyncClient, redact: Callable[[str], str]) -> dict[str, Any]:
    config = client.config
    out: dict[str, Any] = {"name": name or config.name, "type": config.type,
                           "endpoint": public_url(config.base_url) or "", "status": "", "detail": ""}  # fmt: skip
    if config.type in ("embedded", "zero-setup") and not client.started:
        # Asking would start the engine: a dashboard only looks.
        out.update(status="idle", detail="starts on the first request")
        return out
    try:
        health = await asyncio.wait_for(client.health(timeout=HEALTH_TIMEOUT), HEALTH_TIMEOUT + 1)
        out.update(status=health.status, detail=redact(health.detail), endpoint=health.endpoint or out["endpoint"])
    except CorralError as exc:
        out.update(status="error", detail=redact(str(exc)))
    except TimeoutError:
        out.update(status="error", detail=f"no answer within {HEALTH_TIMEOUT:g} s")
    pid = client.engine_pid
    if pid is not None:
        out.update(pid=pid, rss_mb=_rss_mb(pid))
    return out


async def _providers(gw: Gateway, dash: DashboardState) -> list[dict[str, Any]]:
    if dash.lock is None:
        dash.lock = asyncio.Lock()
    async with dash.lock:
        if dash.health is not None and time.monotonic() - dash.health_at < HEALTH_CACHE:
            return dash.health
        names: list[str | None] = list(gw.settings.providers) or [None]
        found = await asyncio.gather(*(_provider_health(n, gw.client(n), gw.redact) for n in names))
        default = gw.settings.default_provider
        for item in found:
            item["default"] = item["name"] == default or len(found) == 1
        dash.health_at, dash.health = time.monotonic(), list(found)
        return dash.health


def _managed(gw: Gateway) -> list[dict[str, Any]]:
    if gw.manager is None:
        return []
    from ..manager.lifecycle import from_scheduler

    live = {str(r["model"]): r for r in gw.manager.running()}
    # The one lifecycle record (status loaded/loading/unloaded, ctx, ttl left, memory) that `corral
    # models`, MCP and /api/ps show too, with the manager's own details beside it.
    records = {s.id: s.as_dict() for s in from_scheduler(gw.manager)}
    out = []
    for spec in gw.manager.settings.models.values():
        row: dict[str, Any] = {"model": spec.name, "aliases": list(spec.aliases), "gguf": spec.gguf.name,
                               "ttl": spec.ttl, "state": "stopped", **records.get(spec.name, {})}  # fmt: skip
        running = live.get(spec.name)
        if running is not None:
            pid = running.get("pid")
            row.update(state=running["state"], pid=pid, inflight=running["inflight"], uptime=running["uptime"],
                       rss_mb=_rss_mb(pid if isinstance(pid, int) else None))  # fmt: skip
        out.append(row)
    return out


async def state(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    routes = [{"name": r.name, "provider": ", ".join(r.replicas) or r.provider or gw.settings.default_provider or "",
               "upstream": r.upstream, "aliases": list(r.aliases)} for r in gw.config.models]  # fmt: skip
    return JSONResponse({
        "version": __version__,
        "uptime_s": round(time.time() - _dashboard(request).started, 1),
        "providers": await _providers(gw, _dashboard(request)),
        "routes": routes,
        "managed": _managed(gw),
        "models": gw.model_names(),
        "replicas": gw.router.replica_state(),  # per replicated or limited model: replicas and queue
        "requests": {"total": gw.observer.total, "failed": gw.observer.failed,
                     "recent": list(reversed(gw.observer.recent))},
    })  # fmt: skip


# -- try-it chat ----------------------------------------------------------------------------------------------
def _event(kind: str, **fields: Any) -> bytes:
    return b"data: " + json.dumps({"type": kind, **fields}).encode() + b"\n\n"


async def chat(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    rec = RequestRecord("/dashboard/chat")
    streaming = False
    try:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # A JSON content type makes a browser ask first (CORS preflight), so another site's page
            # cannot post here on the user's behalf.
            raise WireError(415, "content-type must be application/json")
        body = await gw.read_json(request)
        rec.model_from(body)
        provider = body.pop("provider", None)
        if provider is not None and (not isinstance(provider, str) or provider not in gw.settings.providers):
            known = ", ".join(sorted(gw.settings.providers)) or "none configured"
            raise WireError(400, f"provider must be a configured provider name ({known})", param="provider")
        req = chat_request_from_openai(body)
        if provider is not None:
            rec.provider = provider
            client, upstream = gw.client(provider), body.get("model") or None
        else:
            target = await gw.target(body.get("model"), rec)
            client, upstream = target.client, target.upstream_model(body.get("model"))
        chat_stream = client.stream_request(replace(req, model=upstream))
        await chat_stream.__aenter__()  # errors before the first event are a plain HTTP error
        rec.provider = chat_stream.provider
        started = time.perf_counter()

        async def events() -> AsyncIterator[bytes]:
            try:
                async for event in chat_stream:
                    rec.mark_first_byte()
                    if isinstance(event, ContentDelta):
                        yield _event("content", text=event.text)
                    elif isinstance(event, ReasoningDelta):
                        yield _event("reasoning", text=event.text)
                    elif isinstance(event, ToolCallEnd):
                        yield _event("tool_call", name=event.call.name, arguments=event.call.arguments)
                    elif isinstance(event, Done):
                        r = event.response
                        rec.prompt_tokens, rec.completion_tokens = r.usage.prompt_tokens, r.usage.completion_tokens
                        yield _event(
                            "done", finish_reason=r.finish_reason, provider=r.provider, model=r.model,
                            prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens,
                            latency_ms=round((time.perf_counter() - started) * 1000, 1),
                        )  # fmt: skip
            except CorralError as exc:
                rec.status, _, message = from_corral_error(exc, gw.redact)
                yield _event("error", message=message)
            finally:
                await chat_stream.aclose()
                gw.finish(rec)

        streaming = True
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)
