"""The Anthropic side: /v1/messages (so Claude Code runs on a local model via ANTHROPIC_BASE_URL)
and /v1/messages/count_tokens.

To llama-server (which has a native /v1/messages) or to Anthropic itself the request passes through
as bytes; to any other backend corral translates the Messages API both ways.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..async_transport import OpenStream, TransportFailure
from ..capabilities import Capability
from ..errors import CorralError, ProviderError
from ..events import Done
from ..providers.base import HTTPRequest, Provider, needed_capabilities
from ..stream import AsyncChatStream
from .anthropic_wire import AnthropicEventWriter, anthropic_response, chat_request_from_anthropic, count_tokens_request
from .observe import RequestRecord
from .state import MESSAGES_NATIVE, STREAM_ONLY_CANCEL, Gateway, forwarded, header_items
from .wire_errors import from_corral_error

__all__ = ["count_tokens", "messages"]

SSE_HEADERS = header_items({})


def _native_url(p: Provider, path: str) -> str:
    # Both llama-server and Anthropic serve the Messages API at {root}/v1/messages.
    return f"{p.base_url}{path}"


async def messages(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    rec = RequestRecord("/v1/messages")
    streaming = False
    try:
        body, raw = await gw.accept(request, rec, "anthropic")
        req = chat_request_from_anthropic(body)  # validates, naming the bad field
        stream = bool(body.get("stream"))
        target = await gw.target(body.get("model"), rec)
        upstream_model = target.upstream_model(body.get("model"))
        needs = [Capability.STREAM if stream else Capability.CHAT, *needed_capabilities(req)]
        if target.types <= MESSAGES_NATIVE and (stream or not target.types <= STREAM_ONLY_CANCEL):
            payload = forwarded(body, raw, upstream_model)

            def build(p: Provider) -> HTTPRequest:
                return HTTPRequest("POST", _native_url(p, "/v1/messages"), payload, model_route=True)

            try:
                if stream:
                    provider, upstream = await target.client.passthrough_stream(build, needs)
                    rec.provider = provider.name
                    streaming = True
                    return _relay(gw, rec, upstream)
                got = await gw.until_disconnect(request, target.client.passthrough(build, needs))
                if got is None:
                    rec.status = 499
                    return Response(status_code=499)
                provider, raw = got
                rec.provider = provider.name
                rec.answer = raw
                return Response(raw, media_type="application/json")
            except ProviderError as exc:
                # An older llama-server without /v1/messages: translate instead.
                if exc.status not in (404, 405) or target.client.config.type == "anthropic":
                    raise
        req = replace(req, model=upstream_model)
        if stream:
            chat_stream = target.client.stream_request(req)
            await chat_stream.__aenter__()
            rec.provider = chat_stream.provider
            streaming = True
            return _translated_stream(gw, rec, chat_stream, rec.model or str(upstream_model or ""))
        if target.types <= STREAM_ONLY_CANCEL:
            resp = await gw.assembled(request, target.client.stream_request(req))
        else:
            resp = await gw.until_disconnect(request, target.client.chat_request(req))
        if resp is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider = resp.provider
        rec.prompt_tokens, rec.completion_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
        return JSONResponse(anthropic_response(resp, model=rec.model or resp.model))
    except Exception as exc:  # every failure becomes an Anthropic-shaped answer
        return gw.failure("anthropic", exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)


def _relay(gw: Gateway, rec: RequestRecord, upstream: OpenStream) -> Response:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_bytes():
                rec.mark_first_byte()
                rec.usage_from(chunk)
                yield chunk
        except TransportFailure as exc:
            rec.status = 502
            yield AnthropicEventWriter(rec.model, "").error("api_error", f"upstream stream failed: {exc.detail}")
        finally:
            await upstream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


def _translated_stream(gw: Gateway, rec: RequestRecord, chat_stream: AsyncChatStream, model: str) -> Response:
    writer = AnthropicEventWriter(model, f"msg_{uuid.uuid4().hex[:24]}")

    async def body() -> AsyncIterator[bytes]:
        try:
            yield writer.start()
            async for event in chat_stream:
                rec.mark_first_byte()
                if isinstance(event, Done):
                    u = event.response.usage
                    rec.prompt_tokens, rec.completion_tokens = u.prompt_tokens, u.completion_tokens
                    yield writer.finish(event.response)
                    continue
                frame = writer.event(event)
                if frame:
                    yield frame
        except CorralError as exc:
            status, kind, message = from_corral_error(exc)
            rec.status = status
            yield writer.error(kind, message)
        finally:
            await chat_stream.aclose()
            gw.finish(rec)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)


async def count_tokens(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    rec = RequestRecord("/v1/messages/count_tokens")
    try:
        body, _ = await gw.accept(request, rec, "anthropic")
        req = count_tokens_request(body)
        target = await gw.target(body.get("model"), rec)
        provider = await target.client.get_provider()
        rec.provider = provider.name
        if target.client.config.type == "anthropic":
            forwarded = dict(body)
            upstream = target.upstream_model(body.get("model"))
            if upstream is not None:
                forwarded["model"] = upstream
            _, raw = await target.client.passthrough(
                lambda p: HTTPRequest("POST", _native_url(p, "/v1/messages/count_tokens"), forwarded), []
            )
            return Response(raw, media_type="application/json")
        # llama.cpp counts exactly: render the conversation with the model's template, then tokenize.
        prompt = await target.client.apply_template(req.messages)
        tokens = await target.client.tokenize(prompt)
        rec.prompt_tokens = len(tokens)
        return JSONResponse({"input_tokens": len(tokens)})
    except Exception as exc:
        return gw.failure("anthropic", exc, rec)
    finally:
        gw.finish(rec)
