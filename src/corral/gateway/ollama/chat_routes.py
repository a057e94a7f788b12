"""/api/chat and /api/generate on the shared chat pipeline (gateway/chat.py).

To an ``ollama`` provider a request passes through as bytes (its model named the gateway's way);
to any other it is translated. The wire's ``target`` step reads Ollama's names (``:latest``),
answers Ollama's load/unload requests itself, hands ``keep_alive`` to the model manager, puts the
options each provider can take into its request (naming the others in ``x-corral-not-applied``),
and runs /api/generate's raw and fill-in-the-middle completions, which are not chats.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...providers.base import HTTPRequest, Provider
from ...types import ChatResponse, Completion
from ..chat import ChatCall, ChatWire
from ..observe import RequestRecord
from ..relay import NDJSON_MALFORMED, EventWriter, RelayCheck, WireJSON, until_disconnect
from ..routing import LLAMACPP_TYPES, Resolved
from ..state import Gateway
from .names import canonical_name, is_managed, resolve
from .options import NOT_APPLIED_HEADER, provider_extras
from .request import chat_call, generate_call
from .response import OllamaLineWriter, created_at, ndjson, ollama_chat, ollama_generate

__all__ = ["OLLAMA_CHAT", "OLLAMA_GENERATE", "OLLAMA_NATIVE"]

#: provider types that speak Ollama's API themselves
OLLAMA_NATIVE = frozenset({"ollama"})


#: how a relayed Ollama stream ends (a ``done: true`` line) and fails (an ``error`` line)
_RELAY = RelayCheck(
    end=re.compile(rb'"done"\s*:\s*true'),
    failure=re.compile(rb'(?m)^\{\s*"error"'),
    error=lambda model, status, kind, message: ndjson({"error": message}),
    media_type="application/x-ndjson",
    separator=b"\n",
    malformed=NDJSON_MALFORMED,
)


def _loaded(call: ChatCall, reason: str) -> Response:
    """Ollama's answer to a request with nothing to generate: the model was loaded (or unloaded)."""
    out: dict[str, Any] = {"model": call.options["asked"], "created_at": created_at()}
    if call.options["kind"] == "chat":
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return WireJSON(out | {"done": True, "done_reason": reason})


class _OllamaWire(ChatWire):
    protocol = "ollama"
    native_types = OLLAMA_NATIVE
    check = _RELAY
    path = ""

    def native_request(self, provider: Provider, payload: Any) -> HTTPRequest:
        return HTTPRequest("POST", f"{provider.base_url}{self.path}", payload, model_route=True)

    async def target(self, request: Request, call: ChatCall, rec: RequestRecord) -> Resolved | Response:
        gw: Gateway = request.app.state.gateway
        o = call.options
        keep_alive = o["keep_alive"]
        name = canonical_name(gw, o["asked"])
        managed = is_managed(gw, name)
        if o["load_only"] and keep_alive == 0 and managed and gw.manager is not None:
            await gw.manager.unload(name)  # stops it if it runs, once its requests are done
            return _loaded(call, "unload")
        target = await resolve(gw, o["asked"], name, rec)  # a managed model: started and held
        o["routed"] = time.perf_counter_ns()
        if managed and keep_alive is not None and gw.manager is not None:
            # Runs after the lease is released (on_finish runs in order): 0 then unloads at once.
            rec.on_finish.append(partial(gw.manager.keep_alive, name, keep_alive))
        if target.types <= OLLAMA_NATIVE:
            return target  # Ollama itself: everything passes through, load and unload included
        if o["load_only"]:  # nothing to load on a remote provider
            return _loaded(call, "unload" if keep_alive == 0 else "load")
        extra, skipped = provider_extras(o["opts"], o["think"], o["keep_alive_given"], target.types, managed=managed)
        if o.get("completion"):
            return await _complete(request, call, target, rec, extra, skipped)
        if extra:
            call.req = replace(call.req, extra_body={**call.req.extra_body, **extra})
        if skipped:
            call.headers[NOT_APPLIED_HEADER] = ", ".join(skipped)
        return target

    def limit_output(self, call: ChatCall, n: int) -> None:
        """The gateway's output clamp: Ollama's limit is ``options.num_predict``."""
        call.req = replace(call.req, max_tokens=n)
        body = dict(call.changed if call.changed is not None else call.body)
        body["options"] = {**(body.get("options") or {}), "num_predict": n}
        call.changed = body

    def response(self, resp: ChatResponse, call: ChatCall, model: str) -> dict[str, Any]:
        if call.options["kind"] == "chat":
            return ollama_chat(resp, call.options, call.options["asked"])
        return ollama_generate(resp, call.options, call.options["asked"])

    def writer(self, call: ChatCall, model: str) -> EventWriter:
        return OllamaLineWriter(call.options["asked"], call.options)


class OllamaChat(_OllamaWire):
    route = "/api/chat"
    path = "/api/chat"

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        return chat_call(body, raw)


class OllamaGenerate(_OllamaWire):
    route = "/api/generate"
    path = "/api/generate"

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        return generate_call(body, raw)


OLLAMA_CHAT = OllamaChat()
OLLAMA_GENERATE = OllamaGenerate()


async def _complete(
    request: Request, call: ChatCall, target: Resolved, rec: RequestRecord, extra: dict[str, Any], skipped: list[str]
) -> Response:
    """/api/generate with ``raw`` (llama.cpp's /completion, /v1/completions elsewhere) or ``suffix``
    (llama.cpp's /infill). Neither streams in corral: a streamed request gets the whole text as one
    line, then the final line. The gateway's output limits apply as to chats."""
    gw: Gateway = request.app.state.gateway
    o = call.options
    opts = o["opts"]
    if o["think"] is not None:
        skipped.append("think")  # a raw prompt has no chat template to switch thinking on or off
    if opts.top_p is not None:
        extra["top_p"] = opts.top_p
    text = o["prompt"] + (o["suffix"] or "")
    clamp = await gw.limits.clamp(target, opts.max_tokens, len(text.encode()), partial(_tokens, target, text),
                                  llamacpp=target.types <= LLAMACPP_TYPES)  # fmt: skip
    headers = clamp.header() if clamp is not None else {}
    sampling: dict[str, Any] = {"max_tokens": clamp.applied if clamp is not None else opts.max_tokens,
                                "temperature": opts.temperature, "stop": list(opts.stop) or None, "seed": opts.seed,
                                "extra_body": extra}  # fmt: skip
    if o["suffix"]:
        work = target.client.infill(o["prompt"], o["suffix"], **sampling)
    else:
        upstream = target.upstream_model(o["asked"])
        if upstream is not None and not target.types <= LLAMACPP_TYPES:
            extra["model"] = upstream
        work = target.client.complete(o["prompt"], **sampling)
    result: Completion | None = await until_disconnect(request, work)
    if skipped:
        headers[NOT_APPLIED_HEADER] = ", ".join(skipped)
    if result is None:
        rec.status = 499
        return Response(status_code=499)
    rec.provider = result.provider
    rec.prompt_tokens, rec.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
    whole = ollama_generate(result, o, o["asked"])
    if not call.stream:
        return WireJSON(whole, headers=headers)
    first = {"model": whole["model"], "created_at": whole["created_at"], "response": whole["response"], "done": False}
    last = whole | {"response": ""}
    return Response(ndjson(first) + ndjson(last), media_type="application/x-ndjson", headers=headers)


async def _tokens(target: Resolved, text: str) -> int:
    return len(await target.client.tokenize(text, add_special=True))
