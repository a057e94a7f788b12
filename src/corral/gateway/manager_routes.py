"""llama-swap's management API, served by corral's own model manager:
GET /running, POST /api/models/unload[/{model}], POST /models/{model}/load, and
/upstream/{model}/{path} straight to a model's llama-server (slot save/restore, props, metrics…)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ..async_transport import RawJSON, TransportFailure
from ..errors import ConfigurationError
from ..providers.base import HTTPRequest
from .body import read_body
from .observe import RequestRecord
from .state import Gateway
from .wire_errors import WireError, error_response

__all__ = ["load", "running", "unload", "unload_one", "upstream"]


def _gateway(request: Request) -> Gateway | Response:
    gw: Gateway = request.app.state.gateway
    if not gw.authorized(request):
        return error_response("openai", 401, "authentication_error", "missing or invalid API key")
    if gw.manager is None:
        return error_response("openai", 404, "not_found_error", "no [manager] is configured on this gateway")
    return gw


def _unmanaged(model: str) -> WireError:
    # The same 404 on every route that names a model (the OpenAI shape, code model_not_found).
    return WireError(404, f"model {model!r} is not managed", param="model", kind="not_found_error")


async def running(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    assert gw.manager is not None
    return JSONResponse({"running": gw.manager.running()})


async def unload(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    assert gw.manager is not None
    await gw.manager.unload()
    return JSONResponse({"msg": "ok"})


async def unload_one(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    assert gw.manager is not None
    model = request.path_params["model"]
    try:
        await gw.manager.unload(model)
    except ConfigurationError as exc:
        return error_response("openai", 404, "not_found_error", str(exc), "model")
    return PlainTextResponse("OK")


async def load(request: Request) -> Response:
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    assert gw.manager is not None
    rec = RequestRecord("/models/load", model=request.path_params["model"])
    try:
        if gw.manager.model_for(rec.model) is None:
            raise _unmanaged(rec.model)
        proc = await gw.manager.load(rec.model)
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        gw.finish(rec)
    return JSONResponse({"model": proc.spec.name, "state": proc.state.value})


async def upstream(request: Request) -> Response:
    """A request passed to one managed model's llama-server as it is (its key added by corral), the
    answer relayed as it comes: a streamed generation stops when the client leaves."""
    gw = _gateway(request)
    if isinstance(gw, Response):
        return gw
    rec = RequestRecord("/upstream", model=request.path_params["model"])
    streaming = False
    try:
        if gw.manager is None or gw.manager.model_for(rec.model) is None:
            raise _unmanaged(rec.model)
        body = await read_body(request, gw.config.max_body_bytes)
        if body.strip():
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                raise WireError(400, "the body for a llama-server route must be JSON") from None
        target = await gw.target(rec.model, rec)
        path = "/" + request.path_params["path"]
        if request.url.query:
            path += "?" + request.url.query
        method: Literal["GET", "POST"] = "GET" if request.method == "GET" else "POST"
        payload = RawJSON(body) if body.strip() else None
        _, answer = await target.client.passthrough_stream(
            lambda p: HTTPRequest(method, f"{p.base_url}{path}", payload), []
        )
        media = answer.headers.get("content-type", "application/json")

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_bytes():
                    rec.mark_first_byte()
                    yield chunk
            except TransportFailure:
                rec.status = 502  # cut mid-answer: the client sees a truncated body, the log says so
            except (asyncio.CancelledError, GeneratorExit):
                rec.status = 499
                raise
            finally:
                await answer.aclose()
                gw.finish(rec)

        streaming = True
        return StreamingResponse(relay(), media_type=media, headers={"cache-control": "no-cache"})
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)
