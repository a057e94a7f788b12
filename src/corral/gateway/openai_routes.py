"""The OpenAI side: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

To an OpenAI-shaped backend (llama-server, OpenAI, vLLM, llama-swap) a request passes through as
bytes, only its model name rewritten, and the answer comes back as the backend sent it (llama.cpp's
timings included). To others (Anthropic, Ollama) corral translates both ways.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..async_transport import OpenStream, TransportFailure
from ..capabilities import Capability
from ..errors import CorralError
from ..events import Done
from ..providers.base import HTTPRequest, Provider, needed_capabilities
from ..stream import AsyncChatStream
from .observe import RequestRecord
from .openai_wire import (
    OpenAIChunkWriter,
    chat_request_from_openai,
    completion_request_from_openai,
    embedding_inputs_from_openai,
    openai_completion_response,
    openai_embeddings_response,
    openai_models,
    openai_response,
    openai_stream_flags,
    rerank_request_from_wire,
    rerank_response,
)
from .state import OPENAI_SHAPED, STREAM_ONLY_CANCEL, Gateway, error_response, forwarded, header_items, now
from .wire_errors import WireError, from_corral_error

__all__ = ["chat_completions", "completions", "embeddings", "models", "rerank"]

SSE_HEADERS = header_items({})


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def chat_completions(request: Request) -> Response:
    gw = _gateway(request)
    rec = RequestRecord("/v1/chat/completions")
    streaming = False  # a streamed answer records its metrics when it ends, not here
    try:
        body, raw = await gw.accept(request, rec, "openai")
        req = chat_request_from_openai(body)  # validates every field, naming the bad one
        stream, include_usage = openai_stream_flags(body)
        target = await gw.target(body.get("model"), rec)
        upstream_model = target.upstream_model(body.get("model"))
        needs = [Capability.STREAM if stream else Capability.CHAT, *needed_capabilities(req)]
        if target.types <= OPENAI_SHAPED and (stream or not target.types <= STREAM_ONLY_CANCEL):
            payload = forwarded(body, raw, upstream_model)

            def build(p: Provider) -> HTTPRequest:
                return HTTPRequest("POST", p.url("/chat/completions"), payload, model_route=True)  # type: ignore[attr-defined]

            if stream:
                provider, upstream = await target.client.passthrough_stream(build, needs)
                rec.provider = provider.name
                streaming = True
                return _relay(gw, rec, upstream)
            got = await gw.until_disconnect(request, target.client.passthrough(build, needs))
            if got is None:
                rec.status = 499  # the client went away; the upstream call was cancelled
                return Response(status_code=499)
            provider, raw = got
            rec.provider = provider.name
            rec.answer = raw
            return Response(raw, media_type="application/json")
        # Translate: the backend speaks another protocol.
        req = replace(req, model=upstream_model)
        if stream:
            chat_stream = target.client.stream_request(req)
            await chat_stream.__aenter__()  # errors before the first byte are still a plain HTTP error
            rec.provider = chat_stream.provider
            streaming = True
            return _translated_stream(gw, rec, chat_stream, rec.model, include_usage)
        if target.types <= STREAM_ONLY_CANCEL:
            resp = await gw.assembled(request, target.client.stream_request(req))
        else:
            resp = await gw.until_disconnect(request, target.client.chat_request(req))
        if resp is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider = resp.provider
        rec.prompt_tokens, rec.completion_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
        return JSONResponse(openai_response(resp, model=rec.model or resp.model, created=now()))
    except Exception as exc:  # every failure becomes an OpenAI-shaped answer
        return gw.failure("openai", exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)


def _relay(gw: Gateway, rec: RequestRecord, upstream: OpenStream) -> Response:
    """Forward a pass-through stream chunk by chunk. A client disconnect cancels this generator
    (Starlette watches for it), and closing the upstream response stops the generation."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                rec.mark_first_byte()
                rec.usage_from(chunk)
                yield chunk
        except TransportFailure as exc:
            # Headers are gone already: the failure travels as an error event, then the stream ends.
            rec.status = 502
            yield OpenAIChunkWriter(rec.model, now(), "").error(
                502, "api_error", f"upstream stream failed: {exc.detail}"
            )
        finally:
            await upstream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


def _translated_stream(
    gw: Gateway, rec: RequestRecord, chat_stream: AsyncChatStream, model: str, include_usage: bool
) -> Response:
    writer = OpenAIChunkWriter(model, now(), f"chatcmpl-{uuid.uuid4().hex[:24]}", include_usage)

    async def body() -> AsyncIterator[bytes]:
        try:
            yield writer.first()
            async for event in chat_stream:
                rec.mark_first_byte()
                if isinstance(event, Done):
                    u = event.response.usage
                    rec.prompt_tokens, rec.completion_tokens = u.prompt_tokens, u.completion_tokens
                frame = writer.event(event)
                if frame:
                    yield frame
            yield writer.done()
        except CorralError as exc:
            status, kind, message = from_corral_error(exc)
            rec.status = status
            yield writer.error(status, kind, message)
        finally:
            await chat_stream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


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
        result = await gw.until_disconnect(request, target.client.complete(prompt, extra_body=params))
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
        result = await gw.until_disconnect(request, work)
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
