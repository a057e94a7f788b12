"""The Anthropic routes' handlers: /v1/messages (through the shared chat pipeline) and
/v1/messages/count_tokens.

To llama-server (which has a native /v1/messages) or to Anthropic itself the request passes through
as bytes; to any other backend corral translates the Messages API both ways.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...providers.base import HTTPRequest, Provider
from ...types import ChatResponse
from ..chat import ChatCall, ChatWire, serve_chat
from ..observe import RequestRecord
from ..relay import EventWriter, RelayCheck
from ..state import Gateway
from .wire import AnthropicEventWriter, anthropic_response, chat_request_from_anthropic, count_tokens_request

__all__ = ["ANTHROPIC_MESSAGES", "count_tokens", "messages"]


def _native_url(p: Provider, path: str) -> str:
    # Both llama-server and Anthropic serve the Messages API at {root}/v1/messages.
    return f"{p.base_url}{path}"


def client_betas(provider: Provider, request: Request) -> dict[str, str]:
    """The client's ``anthropic-beta`` opt-ins, with the provider's own, for a request passed through to
    Anthropic: Claude Code's bodies use fields (``context_management``, …) that Anthropic accepts
    only under their betas."""
    asked = [b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()]
    if not asked:
        return {}
    own = [b.strip() for b in provider.headers().get("anthropic-beta", "").split(",") if b.strip()]
    return {"anthropic-beta": ",".join(dict.fromkeys(own + asked))}


#: how a relayed Messages stream ends (message_stop) and fails (an error event)
_RELAY = RelayCheck(
    end=re.compile(rb'"type"\s*:\s*"message_stop"'),
    failure=re.compile(rb"(?m)^event:\s*error"),
    error=lambda model, status, kind, message: AnthropicEventWriter(model, "").error(status, kind, message),
)


class AnthropicMessages(ChatWire):
    """Passed through to Anthropic itself; translated for every other backend, llama-server included:
    its own /v1/messages reports stop sequences as end_turn, knows no thinking budget, and cannot
    have its tool calls repaired and checked, so corral speaks Anthropic for it (llama.cpp's OpenAI
    route upstream, with per-token timings for message_start's input tokens)."""

    protocol = "anthropic"
    route = "/v1/messages"
    native_types = frozenset({"anthropic"})
    check = _RELAY

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        req = chat_request_from_anthropic(body)  # validates, naming the bad field
        return ChatCall(req, bool(body.get("stream")), body, raw)

    def native_request(self, provider: Provider, payload: Any) -> HTTPRequest:
        return HTTPRequest("POST", _native_url(provider, "/v1/messages"), payload, model_route=True)

    def upstream_headers(self, provider: Provider, request: Request) -> dict[str, str]:
        return client_betas(provider, request)

    def response(self, resp: ChatResponse, call: ChatCall, model: str) -> dict[str, Any]:
        return anthropic_response(resp, model=model)

    def limit_output(self, call: ChatCall, n: int) -> None:
        super().limit_output(call, n)
        assert call.changed is not None
        thinking = call.body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            # Anthropic wants 1024 <= budget_tokens < max_tokens; below that there is no room to think.
            budget = thinking.get("budget_tokens")
            if n <= 1024:
                call.changed["thinking"] = {"type": "disabled"}
            elif isinstance(budget, int) and budget >= n:
                call.changed["thinking"] = {**thinking, "budget_tokens": n - 1}

    def writer(self, call: ChatCall, model: str) -> EventWriter:
        choice = call.req.tool_choice
        forced = choice == "required" or isinstance(choice, dict)  # the answer must be a call: no text first
        return AnthropicEventWriter(model, f"msg_{uuid.uuid4().hex[:24]}", usage=call.usage_so_far, hold_content=forced)


ANTHROPIC_MESSAGES = AnthropicMessages()


async def messages(request: Request) -> Response:
    return await serve_chat(request, ANTHROPIC_MESSAGES)


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
                lambda p: HTTPRequest("POST", _native_url(p, "/v1/messages/count_tokens"), forwarded,
                                      headers=client_betas(p, request)),
                [],
            )  # fmt: skip
            return Response(raw, media_type="application/json")
        # llama.cpp counts exactly: render the conversation and its tools with the model's template
        # (the system prompt is its first message), then tokenize with the template's special tokens.
        prompt = await target.client.apply_template(req.messages, tools=req.tools)
        tokens = await target.client.tokenize(prompt, add_special=True)
        rec.prompt_tokens = len(tokens)
        return JSONResponse({"input_tokens": len(tokens)})
    except Exception as exc:
        return gw.failure("anthropic", exc, rec)
    finally:
        gw.finish(rec)
