"""The Ollama routes' handlers: chat and generate (through the shared chat pipeline), embeddings,
and the model routes (/api/tags, /api/ps, /api/show, /api/version)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...capabilities import Capability
from ...manager.lifecycle import from_scheduler
from ...probe.capabilities import advertised
from ...providers.base import HTTPRequest
from ..chat import serve_chat
from ..observe import RequestRecord
from ..relay import until_disconnect
from ..routing import LLAMACPP_TYPES
from ..state import Gateway
from ..wire_errors import WireError, error_response
from .chat_routes import OLLAMA_CHAT, OLLAMA_GENERATE, OLLAMA_NATIVE
from .models import (
    FOREVER_S,
    OLLAMA_API_VERSION,
    gguf_info,
    iso_time,
    ps_entry,
    show_managed,
    tag_entry,
)
from .names import canonical_name, is_managed, not_found, resolve
from .options import parse_keep_alive

__all__ = ["chat", "embed", "embeddings", "generate", "ps", "running_models", "show", "tags", "unsupported", "version"]


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _refused(gw: Gateway, request: Request) -> Response | None:
    if gw.authorized(request):
        return None
    return error_response("ollama", 401, "authentication_error",
                          "missing or invalid API key (Authorization: Bearer …; the ollama clients send "
                          "OLLAMA_API_KEY so)")  # fmt: skip


async def chat(request: Request) -> Response:
    return await serve_chat(request, OLLAMA_CHAT)


async def generate(request: Request) -> Response:
    return await serve_chat(request, OLLAMA_GENERATE)


# -- embeddings -------------------------------------------------------------------------------------------------
def _embed_inputs(b: Mapping[str, Any]) -> list[str]:
    value = b.get("input")
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise WireError(400, "input must be a string or an array of strings", param="input")
    return list(items)


def _shortened(vector: list[float], dimensions: int | None) -> list[float]:
    """Ollama's ``dimensions``: the first n values, scaled back to unit length."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


async def _embed(request: Request, route: str) -> Response:
    gw = _gateway(request)
    rec = RequestRecord(route)
    legacy = route == "/api/embeddings"
    try:
        body, _ = await gw.accept(request, rec, "ollama")
        asked = body.get("model")
        if not isinstance(asked, str) or not asked.strip():
            raise WireError(400, "model is required", param="model")
        if legacy:
            prompt = body.get("prompt")
            if prompt is not None and not isinstance(prompt, str):
                raise WireError(400, "prompt must be a string", param="prompt")
            inputs = [prompt] if prompt else []
        else:
            inputs = _embed_inputs(body)
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
            raise WireError(400, f"dimensions must be a positive integer, got {dims!r}", param="dimensions")
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        name = canonical_name(gw, asked)
        started = asyncio.get_running_loop().time()
        target = await resolve(gw, asked, name, rec)
        loaded = asyncio.get_running_loop().time()
        if keep_alive is not None and is_managed(gw, name) and gw.manager is not None:
            manager = gw.manager
            rec.on_finish.append(lambda: manager.keep_alive(name, keep_alive))
        if not inputs:  # Ollama's way to load an embedding model
            return JSONResponse({"embedding": []} if legacy else {"model": asked, "embeddings": []})
        result = await until_disconnect(request, target.client.embed(inputs, model=target.upstream_model(asked)))
        if result is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider, rec.prompt_tokens = result.provider, result.usage.prompt_tokens
        if legacy:
            return JSONResponse({"embedding": result.vectors[0]})
        done = asyncio.get_running_loop().time()
        return JSONResponse({
            "model": asked, "embeddings": [_shortened(v, dims) for v in result.vectors],
            "total_duration": int((done - started) * 1e9), "load_duration": int((loaded - started) * 1e9),
            "prompt_eval_count": result.usage.prompt_tokens,
        })  # fmt: skip
    except Exception as exc:
        return gw.failure("ollama", exc, rec)
    finally:
        gw.finish(rec)


async def embed(request: Request) -> Response:
    return await _embed(request, "/api/embed")


async def embeddings(request: Request) -> Response:
    return await _embed(request, "/api/embeddings")


# -- models -----------------------------------------------------------------------------------------------------
def _local_tags(gw: Gateway) -> list[dict[str, Any]]:
    out = []
    for name in gw.model_names():
        model = gw.manager.model_for(name) if gw.manager is not None else None
        if model is not None and gw.manager is not None:
            out.append(tag_entry(name, path=gw.manager.settings.models[model].gguf))
        else:
            out.append(tag_entry(name))
    return out


async def _upstream_json(gw: Gateway, method: str, path: str, body: Any = None) -> Response:
    """An Ollama default provider's own answer, relayed."""
    client = gw.client(None)
    _, raw = await client.passthrough(lambda p: HTTPRequest(method, f"{p.base_url}{path}", body), [])  # type: ignore[arg-type]
    return Response(raw, media_type="application/json")


async def tags(request: Request) -> Response:
    gw = _gateway(request)
    refused = _refused(gw, request)
    if refused is not None:
        return refused
    try:
        if gw.model_names():
            return JSONResponse({"models": await asyncio.to_thread(_local_tags, gw)})
        # No [models] and no managed models: what the default provider serves is what the gateway serves.
        if gw.client(None).config.type == "ollama":
            return await _upstream_json(gw, "GET", "/api/tags")
        found = await gw.client(None).models()
        return JSONResponse({"models": [tag_entry(m.id) for m in found]})
    except Exception as exc:
        return gw.failure("ollama", exc, RequestRecord("/api/tags"))


def running_models(gw: Gateway) -> list[dict[str, Any]]:
    """/api/ps's managed part: the manager's lifecycle records of the models loaded or loading,
    longest time left first."""
    if gw.manager is None:
        return []
    specs = gw.manager.settings.models
    live = [s for s in from_scheduler(gw.manager) if s.status != "unloaded"]
    return sorted((ps_entry(s, specs[s.id]) for s in live), key=lambda e: e["expires_at"], reverse=True)


def _always_loaded(gw: Gateway) -> list[dict[str, Any]]:
    """Models other providers serve: loaded as far as the gateway can tell, never unloaded by it."""
    forever = iso_time(time.time() + FOREVER_S)
    out = []
    for route in gw.config.models:
        if gw.manager is None or gw.manager.model_for(route.name) is None:
            entry = tag_entry(route.name)
            entry.pop("modified_at")
            out.append(entry | {"size_vram": 0, "expires_at": forever})
    return out


async def ps(request: Request) -> Response:
    gw = _gateway(request)
    refused = _refused(gw, request)
    if refused is not None:
        return refused
    try:
        if not gw.model_names() and gw.client(None).config.type == "ollama":
            return await _upstream_json(gw, "GET", "/api/ps")
        models = await asyncio.to_thread(running_models, gw)
        return JSONResponse({"models": models + _always_loaded(gw)})
    except Exception as exc:
        return gw.failure("ollama", exc, RequestRecord("/api/ps"))


_CAPS = ((Capability.CHAT, "completion"), (Capability.TOOLS, "tools"), (Capability.VISION, "vision"))


async def _show_other(gw: Gateway, asked: str, name: str, verbose: bool) -> Response:
    """/api/show for a model another provider serves: its own answer from Ollama, llama-server's
    /props (chat template, context, tools and vision) from llama.cpp, else corral's capabilities."""
    try:
        target = gw.resolve(name)
    except WireError as exc:
        raise not_found(asked) if exc.status == 404 else exc from None
    upstream = target.upstream_model(name)
    if target.types <= OLLAMA_NATIVE:
        return await _upstream_json(gw, "POST", "/api/show", {"model": upstream, "verbose": verbose})
    out: dict[str, Any] = {"modelfile": "", "parameters": "", "template": "", "model_info": {},
                           "details": {"parent_model": "", "format": "", "family": "", "families": None,
                                       "parameter_size": "", "quantization_level": ""}}  # fmt: skip
    if target.types <= LLAMACPP_TYPES:
        props = await target.client.props()
        caps = props.get("chat_template_caps") or {}
        modalities = props.get("modalities") or {}
        n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
        out["template"] = props.get("chat_template") or ""
        out["parameters"] = f"{'num_ctx':<30} {n_ctx}" if isinstance(n_ctx, int) else ""
        out["capabilities"] = ["completion"] + ["tools"] * bool(caps.get("supports_tools")) + \
            ["vision"] * bool(modalities.get("vision"))  # fmt: skip
    else:
        on = advertised(await target.client.get_provider(), upstream)
        out["capabilities"] = [word for cap, word in _CAPS if cap in on]
    return JSONResponse(out)


async def show(request: Request) -> Response:
    gw = _gateway(request)
    rec = RequestRecord("/api/show")
    try:
        body, _ = await gw.accept(request, rec, "ollama")
        asked = body.get("model") or body.get("name")
        if not isinstance(asked, str) or not asked.strip():
            raise WireError(400, "model is required", param="model")
        verbose = body.get("verbose") is True
        name = canonical_name(gw, asked)
        model = gw.manager.model_for(name) if gw.manager is not None else None
        if model is None or gw.manager is None:
            return await _show_other(gw, asked, name, verbose)
        spec = gw.manager.settings.models[model]
        info = await asyncio.to_thread(gguf_info, spec.gguf)
        ctx = next((s.ctx for s in from_scheduler(gw.manager) if s.id == model), None)
        return JSONResponse(show_managed(info, spec.args, spec.gguf, ctx, verbose=verbose))
    except Exception as exc:
        return gw.failure("ollama", exc, rec)
    finally:
        gw.finish(rec)


async def version(request: Request) -> Response:
    # Open, like /health: clients probe it before they are configured with a key.
    return JSONResponse({"version": OLLAMA_API_VERSION})


async def unsupported(request: Request) -> Response:
    """Ollama's model store (pull, push, create, copy, delete): corral has its own (``corral pull``)."""
    path = request.url.path
    message = (f"{path} is not supported: corral serves GGUF models from [manager] (download them with "
               f"`corral pull org/repo:QUANT`) and the providers you configure")  # fmt: skip
    return error_response("ollama", 501, "api_error", message)
