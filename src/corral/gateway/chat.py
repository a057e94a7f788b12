"""The chat pipeline every wire protocol shares: accept, parse, route, then pass through to a backend
that speaks the caller's protocol or translate through corral's types, relaying the answer whole or
streamed, with cancel-on-disconnect, output limits, errors in the caller's shape and one log record.

A protocol plugs in a :class:`ChatWire`: how to read its request, how to write its answer, whole and
streamed, and which backends speak it natively."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..capabilities import Capability
from ..errors import ConnectionFailed, ProviderError, ResponseError, ServerError
from ..providers.base import ChatRequest, HTTPRequest, Provider, needed_capabilities
from .body import OFF_LOOP_BYTES
from .observe import RequestRecord
from .relay import (
    EventWriter,
    RelayCheck,
    WireJSON,
    assembled,
    relay_stream,
    rename_model,
    translated_stream,
    until_disconnect,
)
from .routing import LLAMACPP_TYPES, STREAM_ONLY_CANCEL, Resolved
from .state import forwarded

if TYPE_CHECKING:
    from ..types import ChatResponse, Usage
    from .state import Gateway
    from .wire_errors import WireProtocol

__all__ = ["ChatCall", "ChatWire", "serve_chat"]


@dataclass(slots=True)
class ChatCall:
    """One chat request as a route read it."""

    req: ChatRequest
    stream: bool
    body: dict[str, Any]  # the client's JSON, as sent
    raw: bytes  # the client's bytes
    options: dict[str, Any] = field(default_factory=dict)  # the protocol's own (include_usage, …)
    headers: dict[str, str] = field(default_factory=dict)  # added to the answer (a clamp, …)
    #: the body to pass through when it differs from the client's (model renamed, output clamped)
    changed: dict[str, Any] | None = None
    #: the usage known so far of a translated stream (llama.cpp's per-token timings), for writers
    usage_so_far: Callable[[], Usage | None] | None = None

    @property
    def model(self) -> str | None:
        return self.req.model

    def payload(self, upstream_model: str | None) -> Any:
        body = self.changed if self.changed is not None else self.body
        raw = self.raw if self.changed is None else b""
        return forwarded(body, raw, upstream_model)


class ChatWire:
    """One protocol's chat route. Subclasses set the class attributes and the methods."""

    protocol: WireProtocol = "openai"
    route = ""
    #: the body field that limits the answer's tokens (see limit_output)
    max_tokens_field = "max_tokens"
    #: provider types that serve this protocol themselves: requests pass through to them as bytes
    native_types: frozenset[str] = frozenset()
    #: how a relayed stream of this protocol ends and fails (None: never passed through)
    check: RelayCheck | None = None

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        raise NotImplementedError

    async def target(self, request: Request, call: ChatCall, rec: RequestRecord) -> Resolved | Response:
        """Where the call goes: the gateway's routing by the requested model. A protocol may override
        it to read its own model names, adapt ``call`` to the provider it reached, or answer by itself
        (a Response, returned to the client as it is)."""
        gw: Gateway = request.app.state.gateway
        return await gw.target(call.model, rec, call.req.messages)

    def native_request(self, provider: Provider, payload: Any) -> HTTPRequest:
        raise NotImplementedError

    def upstream_headers(self, provider: Provider, request: Request) -> dict[str, str]:
        """Headers of the client's request that a pass-through carries on (a protocol's opt-ins, such as
        Anthropic's betas); none by default."""
        return {}

    def passes_through(self, target: Resolved, call: ChatCall) -> bool:
        """Whether this request goes to the backend as the client's bytes. Not for a whole answer from
        llama-server: that one is streamed and assembled, so that a client leaving stops it (routing)."""
        return target.types <= self.native_types and (call.stream or not target.types <= STREAM_ONLY_CANCEL)

    def translated(self, call: ChatCall, req: ChatRequest, target: Resolved) -> ChatRequest:
        """The request for ``target`` when it is translated (its backends speak another protocol): a
        protocol may add what only some provider types understand, or refuse what cannot be translated."""
        return req

    def translate_instead(self, exc: ProviderError, provider_type: str) -> bool:
        """Whether a pass-through refused this way should be translated instead (a backend without
        the route)."""
        return False

    def limit_output(self, call: ChatCall, n: int) -> None:
        """Limit the answer to ``n`` tokens: in the ChatRequest (translation) and in the body (pass-through).
        A thinking budget stays below the limit."""
        budget = call.req.thinking_budget
        call.req = replace(call.req, max_tokens=n, thinking_budget=min(budget, n - 1) if budget else budget)
        body = dict(call.changed if call.changed is not None else call.body)
        body[self.max_tokens_field] = n
        call.changed = body

    def response(self, resp: ChatResponse, call: ChatCall, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def writer(self, call: ChatCall, model: str) -> EventWriter:
        raise NotImplementedError


async def _prompt_tokens(target: Resolved, req: ChatRequest) -> int:
    """The prompt's exact size on llama.cpp: the chat template (tools included), then the tokenizer."""
    prompt = await target.client.apply_template(req.messages, tools=req.tools)
    return len(await target.client.tokenize(prompt, add_special=True))


async def _assembled_on_replicas(request: Request, target: Resolved, req: ChatRequest) -> ChatResponse | None:
    """A whole answer read from a stream; with replicas, a replica that dies mid-answer costs the caller
    nothing (no byte has reached it yet): the request goes to another replica, the dead one ejected."""
    balancer = target.client.balancer
    tries = len(balancer.replicas) if balancer is not None else 1
    for attempt in range(tries):
        try:
            return await assembled(request, target.client.stream_request(req))
        except (ConnectionFailed, ServerError, ResponseError):
            if attempt + 1 >= tries:
                raise
    raise AssertionError("unreachable")


async def serve_chat(request: Request, wire: ChatWire) -> Response:
    gw: Gateway = request.app.state.gateway
    rec = RequestRecord(wire.route)
    streaming = False  # a streamed answer records its metrics when it ends, not here
    try:
        body, raw = await gw.accept(request, rec, wire.protocol)
        if len(raw) > OFF_LOOP_BYTES:  # validating a huge body would stall every other request
            call = await asyncio.to_thread(wire.parse, body, raw)
        else:
            call = wire.parse(body, raw)
        routed = await wire.target(request, call, rec)
        if isinstance(routed, Response):
            return routed
        target = routed
        upstream_model = target.upstream_model(call.model)
        model = call.model or ""
        clamp = await gw.limits.clamp(
            target, call.req.max_tokens, len(raw), partial(_prompt_tokens, target, call.req),
            llamacpp=target.types <= LLAMACPP_TYPES,
        )  # fmt: skip
        if clamp is not None:
            wire.limit_output(call, clamp.applied)
            call.headers.update(clamp.header())
        if wire.check is not None and wire.passes_through(target, call):
            payload = call.payload(upstream_model)
            needs = [Capability.STREAM if call.stream else Capability.CHAT, *needed_capabilities(call.req)]

            def build(p: Provider) -> HTTPRequest:
                http = wire.native_request(p, payload)
                extra = wire.upstream_headers(p, request)
                return replace(http, headers={**http.headers, **extra}) if extra else http

            try:
                if call.stream:
                    provider, upstream = await target.client.passthrough_stream(
                        build, needs, affinity=call.req.messages
                    )
                    rec.provider = provider.name
                    streaming = True
                    response = relay_stream(gw, rec, upstream, wire.check, model)
                    response.headers.update(call.headers)
                    return response
                got = await until_disconnect(
                    request, target.client.passthrough(build, needs, affinity=call.req.messages)
                )
                if got is None:
                    rec.status = 499  # the client went away; the upstream call was cancelled
                    return Response(status_code=499)
                provider, answer = got
                rec.provider = provider.name
                body_end = answer.rstrip()[-1:]
                if answer.lstrip()[:1] != b"{" or body_end != b"}":  # a cut or garbled body, not an answer
                    shown = answer[:120].decode("utf-8", "replace")
                    raise ResponseError(f"upstream answered 200 with a body that is not a JSON object: {shown!r}")
                rec.answer = answer
                if model and b'"model"' in answer:
                    answer = rename_model(answer, model)
                return Response(answer, media_type="application/json", headers=call.headers)
            except ProviderError as exc:
                if not wire.translate_instead(exc, target.client.config.type):
                    raise
        # Translate: the backend speaks another protocol.
        req = wire.translated(call, replace(call.req, model=upstream_model), target)
        if call.stream:
            chat_stream = target.client.stream_request(req)
            await chat_stream.__aenter__()  # errors before the first byte are still a plain HTTP error
            rec.provider = chat_stream.provider
            call.usage_so_far = chat_stream.usage_so_far
            streaming = True
            response = translated_stream(gw, rec, chat_stream, wire.writer(call, model))
            response.headers.update(call.headers)
            return response
        if target.types <= STREAM_ONLY_CANCEL:
            resp = await _assembled_on_replicas(request, target, req)
        else:
            resp = await until_disconnect(request, target.client.chat_request(req))
        if resp is None:
            rec.status = 499
            return Response(status_code=499)
        rec.provider = resp.provider
        rec.prompt_tokens, rec.completion_tokens = resp.usage.prompt_tokens, resp.usage.completion_tokens
        return WireJSON(wire.response(resp, call, model or resp.model), headers=call.headers)
    except Exception as exc:  # every failure becomes an answer in the caller's shape
        return gw.failure(wire.protocol, exc, rec)
    finally:
        if not streaming:
            gw.finish(rec)
