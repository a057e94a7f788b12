"""The OpenAI routes' handlers; chat goes through the shared pipeline (gateway/chat.py)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...async_transport import OpenStream, TransportFailure
from ...capabilities import Capability
from ...errors import ResponseError
from ...providers.base import HTTPRequest, Provider
from ...providers.openai_compat.stream import raise_stream_error
from ...sse import StreamDecoder
from ..chat import ChatCall, ChatWire, serve_chat
from ..observe import RequestRecord
from ..relay import EventWriter, RelayCheck, WireJSON, relay_stream, until_disconnect
from ..routing import LLAMACPP_TYPES, OPENAI_SHAPED, STREAM_ONLY_CANCEL, Resolved
from ..state import Gateway, forwarded, now
from ..wire_errors import WireError, WireProtocol, error_response
from .chat_wire import OpenAIChunkWriter, chat_request_from_openai, openai_response, openai_stream_flags
from .completions_wire import CompletionAssembler, completion_request_from_openai, openai_completion_response
from .embeddings_wire import (
    anthropic_models,
    embedding_inputs_from_openai,
    openai_embeddings_response,
    openai_models,
    rerank_request_from_wire,
    rerank_response,
)

__all__ = ["OPENAI_CHAT", "chat_completions", "completions", "embeddings", "model", "models", "rerank"]


#: how a relayed chat.completion.chunk stream ends (``[DONE]`` or a finish reason) and fails
_RELAY = RelayCheck(
    end=re.compile(rb'data: ?\[DONE\]|"finish_reason"\s*:\s*"'),
    failure=re.compile(rb'(?m)^data: ?\{\s*"error"'),
    error=lambda model, status, kind, message: OpenAIChunkWriter(model, now(), "").error(status, kind, message),
)


class OpenAIChat(ChatWire):
    protocol = "openai"
    route = "/v1/chat/completions"
    native_types = OPENAI_SHAPED
    check = _RELAY

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        req = chat_request_from_openai(body)  # validates every field, naming the bad one
        stream, include_usage = openai_stream_flags(body)
        return ChatCall(req, stream, body, raw, {"include_usage": include_usage})

    def passes_through(self, target: Resolved, call: ChatCall) -> bool:
        if (call.body.get("n") or 1) > 1:
            # Several choices: only a backend that makes them itself (llama-server and OpenAI do).
            if not target.types <= OPENAI_SHAPED:
                kind = target.client.config.type
                raise WireError(400, f"n > 1 needs an OpenAI-shaped backend; this model's is {kind}", param="n")
            return True
        # Tool calls from a local model are repaired and checked against their schemas (corral.toolcalls)
        # before a client may run them: that needs the answer parsed, so those requests are translated.
        if call.req.tools and target.types & LLAMACPP_TYPES:
            return False
        return super().passes_through(target, call)

    def limit_output(self, call: ChatCall, n: int) -> None:
        super().limit_output(call, n)
        assert call.changed is not None
        if "max_completion_tokens" in call.body:  # the newer name wins when both are given: set both
            call.changed["max_completion_tokens"] = n

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


_COMPLETION_RELAY = _RELAY  # text_completion chunks end like chat chunks: a finish reason, then [DONE]


async def completions(request: Request) -> Response:
    """/v1/completions. To an OpenAI-shaped backend the body passes through (streamed, several choices,
    every sampling field as the backend reads it); a whole answer from llama-server is streamed upstream
    and assembled here, so a client leaving stops it. Other backends answer through corral's complete()."""
    gw = _gateway(request)
    rec = RequestRecord("/v1/completions")
    streaming = False
    try:
        body, raw = await gw.accept(request, rec, "openai")
        prompt, params = completion_request_from_openai(body)
        stream, n = body.get("stream") is True, body.get("n") or 1
        target = await gw.target(body.get("model"), rec)
        upstream_model = target.upstream_model(body.get("model"))
        if target.types <= OPENAI_SHAPED:
            needs = [Capability.COMPLETION]
            if stream or (n == 1 and target.types <= STREAM_ONLY_CANCEL):
                sent = forwarded(body, raw, upstream_model)
                if not stream:
                    whole = dict(body, model=upstream_model) if upstream_model else dict(body)
                    sent = {**whole, "stream": True, "stream_options": {"include_usage": True}}
                provider, upstream = await target.client.passthrough_stream(_completion_call(sent), needs)
                rec.provider = provider.name
                if stream:
                    streaming = True
                    return relay_stream(gw, rec, upstream, _COMPLETION_RELAY, rec.model)
                answer = await until_disconnect(request, _assembled_completion(upstream, provider.name))
            else:
                got = await until_disconnect(
                    request, target.client.passthrough(_completion_call(forwarded(body, raw, upstream_model)), needs)
                )
                answer = None if got is None else _json_object(got[1])
                rec.provider = got[0].name if got is not None else ""
            if answer is None:
                rec.status = 499
                return Response(status_code=499)
            if rec.model:
                answer["model"] = rec.model
            usage = answer.get("usage") or {}
            rec.prompt_tokens, rec.completion_tokens = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
            return WireJSON(answer)
        if stream or n > 1:
            kind = target.client.config.type
            what = "stream" if stream else "n"
            raise WireError(400, f"{what} on /v1/completions needs an OpenAI-shaped backend; this model's is {kind}",
                            param=what)  # fmt: skip
        if upstream_model is not None:
            params["model"] = upstream_model
        result = await until_disconnect(request, target.client.complete(prompt, extra_body=params))
        if result is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider = result.provider
        rec.prompt_tokens, rec.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
        return WireJSON(openai_completion_response(result, model=rec.model or result.model, created=now()))
    except Exception as exc:
        return gw.failure("openai", exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        shown = raw[:120].decode("utf-8", "replace")
        raise ResponseError(f"upstream answered 200 with a body that is not a JSON object: {shown!r}")
    return found


def _completion_call(payload: Any) -> Any:
    def build(p: Provider) -> HTTPRequest:
        return HTTPRequest("POST", p.url("/completions"), payload, model_route=True)  # type: ignore[attr-defined]

    return build


async def _assembled_completion(upstream: OpenStream, provider: str) -> dict[str, Any]:
    asm = CompletionAssembler()
    decoder = StreamDecoder("sse")
    try:
        async for chunk in upstream.aiter_bytes():
            for payload in decoder.feed(chunk):
                asm.feed(payload)
        for payload in decoder.close():
            asm.feed(payload)
    except TransportFailure as exc:
        raise ResponseError(f"upstream stream failed: {exc.kind}") from exc
    finally:
        await upstream.aclose()
    if asm.error is not None:
        raise_stream_error(asm.error, provider)
    if not asm.complete:
        raise ResponseError("upstream stream ended before the completion was finished")
    return asm.answer("")


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


def _asks_anthropic(request: Request) -> bool:
    """The Anthropic SDKs send ``anthropic-version`` on every call; OpenAI's never do."""
    return "anthropic-version" in request.headers


async def _listed(gw: Gateway) -> list[tuple[str, str]]:
    """(id, owner) of every model this gateway serves."""
    names = gw.model_names()
    if names:
        return [(n, "corral") for n in names]
    # No [models] table: what the default provider serves is what the gateway serves.
    found = await gw.client(None).models()
    return [(m.id, m.owned_by or m.provider) for m in found]


async def models(request: Request) -> Response:
    """GET /v1/models, in Anthropic's shape for an Anthropic client (``anthropic-version``)."""
    gw = _gateway(request)
    protocol: WireProtocol = "anthropic" if _asks_anthropic(request) else "openai"
    if not gw.authorized(request):
        return error_response(protocol, 401, "authentication_error", "missing or invalid API key")
    try:
        items = await _listed(gw)
    except Exception as exc:
        return gw.failure(protocol, exc, RequestRecord("/v1/models"))
    if protocol == "anthropic":
        return JSONResponse(anthropic_models([i for i, _ in items], now()))
    return JSONResponse(openai_models(items, now()))


async def model(request: Request) -> Response:
    """GET /v1/models/{id}: one model (the SDKs' ``models.retrieve``), or 404 in the caller's shape."""
    gw = _gateway(request)
    protocol: WireProtocol = "anthropic" if _asks_anthropic(request) else "openai"
    if not gw.authorized(request):
        return error_response(protocol, 401, "authentication_error", "missing or invalid API key")
    wanted = request.path_params["model"]
    try:
        items = dict(await _listed(gw))
    except Exception as exc:
        return gw.failure(protocol, exc, RequestRecord("/v1/models"))
    if wanted not in items and gw.config.default_route is not None and gw.model_names():
        items[wanted] = "corral"  # a [gateway] default_model serves any name
    if wanted not in items:
        shown = wanted if len(wanted) <= 200 and wanted.isprintable() else repr(wanted[:200])
        return error_response(protocol, 404, "not_found_error", f"model {shown!r} is not served here", "model")
    if protocol == "anthropic":
        return JSONResponse(anthropic_models([wanted], now())["data"][0])
    return JSONResponse(openai_models([(wanted, items[wanted])], now())["data"][0])
