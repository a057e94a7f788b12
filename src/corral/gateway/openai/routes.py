"""The OpenAI routes' handlers; chat goes through the shared pipeline (gateway/chat.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...providers.base import HTTPRequest, Provider
from ..chat import ChatCall, ChatWire, serve_chat
from ..observe import RequestRecord
from ..relay import EventWriter, until_disconnect
from ..routing import LLAMACPP_TYPES, OPENAI_SHAPED, Resolved
from ..state import Gateway, now
from ..wire_errors import WireError, error_response
from .chat_wire import OpenAIChunkWriter, chat_request_from_openai, openai_response, openai_stream_flags
from .completions_wire import completion_request_from_openai, openai_completion_response
from .embeddings_wire import (
    embedding_inputs_from_openai,
    openai_embeddings_response,
    openai_models,
    rerank_request_from_wire,
    rerank_response,
)

__all__ = ["OPENAI_CHAT", "chat_completions", "completions", "embeddings", "models", "rerank"]


class _Relay:
    """How a relayed chat.completion.chunk stream ends (``[DONE]`` or a finish reason) and fails."""

    media_type = "text/event-stream"
    separator = b"\n\n"
    end = re.compile(rb'data: ?\[DONE\]|"finish_reason"\s*:\s*"')
    failure = re.compile(rb'(?m)^data: ?\{\s*"error"')

    def error(self, model: str, status: int, kind: str, message: str) -> bytes:
        return OpenAIChunkWriter(model, now(), "").error(status, kind, message)


class OpenAIChat(ChatWire):
    protocol = "openai"
    route = "/v1/chat/completions"
    native_types = OPENAI_SHAPED
    check = _Relay()

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        req = chat_request_from_openai(body)  # validates every field, naming the bad one
        stream, include_usage = openai_stream_flags(body)
        return ChatCall(req, stream, body, raw, {"include_usage": include_usage})

    def passes_through(self, target: Resolved, call: ChatCall) -> bool:
        # Tool calls from a local model are repaired and checked against their schemas (corral.toolcalls)
        # before a client may run them: that needs the answer parsed, so those requests are translated.
        if call.req.tools and target.types & LLAMACPP_TYPES:
            return False
        return super().passes_through(target, call)

    def native_request(self, provider: Provider, payload: Any) -> HTTPRequest:
        return HTTPRequest("POST", provider.url("/chat/completions"), payload, model_route=True)  # type: ignore[attr-defined]

    def response(self, resp: Any, call: ChatCall, model: str) -> dict[str, Any]:
        return openai_response(resp, model=model, created=now())

    def writer(self, call: ChatCall, model: str) -> EventWriter:
        choice = call.req.tool_choice
        forced = choice == "required" or isinstance(choice, dict)  # the answer must be a call: no text first
        return OpenAIChunkWriter(
            model, now(), f"chatcmpl-{uuid.uuid4().hex[:24]}", call.options["include_usage"], hold_content=forced
        )


OPENAI_CHAT = OpenAIChat()


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def chat_completions(request: Request) -> Response:
    return await serve_chat(request, OPENAI_CHAT)


async def completions(request: Request) -> Response:
    gw = _gateway(request)
    rec = RequestRecord("/v1/completions")
    try:
        body, _ = await gw.accept(request, rec, "openai")
        if body.get("stream"):
            raise WireError(400, "stream is not supported on /v1/completions by this gateway", param="stream")
        prompt, params = completion_request_from_openai(body)
        target = await gw.target(body.get("model"), rec)
        upstream_model = target.upstream_model(body.get("model"))
        params.pop("model", None)
        if upstream_model is not None and target.client.config.type not in ("llamacpp", "embedded", "zero-setup"):
            params["model"] = upstream_model
        result = await until_disconnect(request, target.client.complete(prompt, extra_body=params))
        if result is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider = result.provider
        rec.prompt_tokens, rec.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
        return JSONResponse(openai_completion_response(result, model=rec.model or result.model, created=now()))
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        gw.finish(rec)


async def embeddings(request: Request) -> Response:
    gw = _gateway(request)
    rec = RequestRecord("/v1/embeddings")
    try:
        body, _ = await gw.accept(request, rec, "openai")
        inputs = embedding_inputs_from_openai(body)
        target = await gw.target(body.get("model"), rec)
        result = await target.client.embed(inputs, model=target.upstream_model(body.get("model")))
        rec.provider = result.provider
        rec.prompt_tokens = result.usage.prompt_tokens
        fmt = body.get("encoding_format", "float")
        return JSONResponse(openai_embeddings_response(result, model=rec.model or result.model, encoding_format=fmt))
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        gw.finish(rec)


async def rerank(request: Request) -> Response:
    """/v1/rerank in llama.cpp's (and Jina's) shape, on any provider that reranks; capability
    fallbacks apply, and a provider that cannot rerank is named in the error."""
    gw = _gateway(request)
    rec = RequestRecord("/v1/rerank")
    try:
        body, _ = await gw.accept(request, rec, "openai")
        query, documents, top_n, with_documents = rerank_request_from_wire(body)
        target = await gw.target(body.get("model"), rec)
        work = target.client.rerank(query, documents, top_n=top_n, model=target.upstream_model(body.get("model")))
        result = await until_disconnect(request, work)
        if result is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider, rec.prompt_tokens = result.provider, result.usage.prompt_tokens
        return JSONResponse(rerank_response(result, model=rec.model or result.model, return_documents=with_documents))
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        gw.finish(rec)


async def models(request: Request) -> Response:
    gw = _gateway(request)
    if not gw.authorized(request):
        return error_response("openai", 401, "authentication_error", "missing or invalid API key")
    names = gw.model_names()
    if names:
        return JSONResponse(openai_models([(n, "corral") for n in names], now()))
    # No [models] table: what the default provider serves is what the gateway serves.
    try:
        found = await gw.client(None).models()
    except Exception as exc:
        return gw.failure("openai", exc, RequestRecord("/v1/models"))
    return JSONResponse(openai_models([(m.id, m.owned_by or m.provider) for m in found], now()))
