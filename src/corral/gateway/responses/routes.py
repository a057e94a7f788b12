"""/v1/responses through the shared chat pipeline (gateway/chat.py).

Pass-through only to a provider of type ``openai`` (OpenAI itself, vLLM, any OpenAI-compatible host
that has the route), unless its ``responses = "translate"`` option says otherwise; a host that answers
the route with 404/405/501 is translated instead, and remembered, so the next request goes straight to
its chat route. Every other backend is translated through corral's chat types, llama-server included:
its own /v1/responses (this build) streams events without ``output_index``/``content_index``/
``sequence_number`` (the openai SDK's ``responses.stream()`` fails on them), ignores ``text.format``,
refuses reasoning items without content, accepts custom tools it never offers the model, and says
``completed`` when ``max_output_tokens`` cut the answer. Translated, all of these work.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...errors import ModelNotFound, ProviderError
from ...providers.base import ChatRequest, HTTPRequest, Provider
from ...types import ChatResponse, Message
from ..chat import ChatCall, ChatWire, serve_chat
from ..openai.fields import sse_json
from ..relay import EventWriter, RelayCheck
from ..routing import OPENAI_SHAPED, Resolved
from ..state import Gateway, now
from ..wire_errors import error_response
from .output import ECHOED, ResponseMeta, ResponsesEventWriter, error_code, response_object
from .request import ResponsesRequest, Untranslatable, responses_request

__all__ = ["RESPONSES", "responses", "stored"]


def _relay_error(model: str, status: int, kind: str, message: str) -> bytes:
    # No response id here to fail a response with: an ``error`` event, which needs none.
    event = {"type": "error", "code": error_code(status), "message": message, "param": None}
    return f"event: error\ndata: {sse_json(event)}\n\n".encode()


#: how a relayed Responses stream ends (its final lifecycle event) and fails
_RELAY = RelayCheck(
    end=re.compile(rb'"type"\s*:\s*"response\.(?:completed|incomplete|failed)"'),
    failure=re.compile(rb'(?m)^event:\s*(?:error|response\.failed)\b|^data: ?\{"type":"(?:error|response\.failed)"'),
    error=_relay_error,
)


def _no_parallel(choice: Any) -> Any:
    """An OpenAI tool_choice as Anthropic's, with parallel tool use off."""
    if choice in (None, "auto"):
        return {"type": "auto", "disable_parallel_tool_use": True}
    if choice == "required":
        return {"type": "any", "disable_parallel_tool_use": True}
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"], "disable_parallel_tool_use": True}
    return choice


class Responses(ChatWire):
    protocol = "openai"
    route = "/v1/responses"
    max_tokens_field = "max_output_tokens"
    native_types = frozenset({"openai"})
    check = _RELAY

    def __init__(self) -> None:
        #: providers whose host answered /v1/responses with "no such route": translated from then on
        self.lacking: set[str] = set()

    def parse(self, body: dict[str, Any], raw: bytes) -> ChatCall:
        echo = {key: body[key] for key in ECHOED if body.get(key) is not None}
        if isinstance(body.get("reasoning"), dict):
            echo["reasoning"] = {"effort": None, "summary": None} | body["reasoning"]
        try:
            rr = responses_request(body)
        except Untranslatable as exc:
            # Valid, but only a Responses backend can take it: refused later if the call is translated.
            model = body.get("model") if isinstance(body.get("model"), str) else None
            placeholder = ChatRequest((Message("user", ""),), model=model or None)
            rr = ResponsesRequest(placeholder, body.get("stream") is True)
            return ChatCall(placeholder, rr.stream, body, raw, {"rr": rr, "echo": echo, "refused": exc})
        return ChatCall(rr.req, rr.stream, body, raw, {"rr": rr, "echo": echo})

    def passes_through(self, target: Resolved, call: ChatCall) -> bool:
        config = target.client.config
        if config.name in self.lacking or config.options.get("responses") == "translate":
            return False
        call.options["tried"] = super().passes_through(target, call)
        return bool(call.options["tried"])

    def native_request(self, provider: Provider, payload: Any) -> HTTPRequest:
        # model_route stays off: a 404 for a missing route must not read as an unknown model.
        return HTTPRequest("POST", provider.url("/responses"), payload)  # type: ignore[attr-defined]

    def translate_instead(self, exc: ProviderError, provider_type: str) -> bool:
        return exc.status in (404, 405, 501) and not isinstance(exc, ModelNotFound)

    def translated(self, call: ChatCall, req: ChatRequest, target: Resolved) -> ChatRequest:
        if call.options.get("tried"):  # the pass-through was refused: this host lacks the route
            self.lacking.add(target.client.config.name)
        refused = call.options.get("refused")
        if refused is not None:
            raise refused
        rr: ResponsesRequest = call.options["rr"]
        if rr.ignored_tools:  # hosted tools only a Responses backend runs: the model goes without them
            call.headers["x-corral-tools-ignored"] = ", ".join(rr.ignored_tools)
        # parallel_tool_calls has no field in corral's ChatRequest: said here in the backend's own terms.
        if rr.parallel_tool_calls is None or not req.tools or req.tool_choice == "none":
            return req
        if target.types <= OPENAI_SHAPED:
            return replace(req, extra_body={**req.extra_body, "parallel_tool_calls": rr.parallel_tool_calls})
        if target.types <= {"anthropic"} and rr.parallel_tool_calls is False:
            return replace(req, tool_choice=_no_parallel(req.tool_choice))
        return req  # Ollama has no such switch

    def _meta(self, call: ChatCall, model: str) -> ResponseMeta:
        rr: ResponsesRequest = call.options["rr"]
        return ResponseMeta(model, call.options["echo"], rr.tools, created_at=now())

    def response(self, resp: ChatResponse, call: ChatCall, model: str) -> dict[str, Any]:
        return response_object(resp, self._meta(call, model))

    def writer(self, call: ChatCall, model: str) -> EventWriter:
        choice = call.req.tool_choice
        forced = choice == "required" or isinstance(choice, dict)  # the answer must be a call: no text first
        return ResponsesEventWriter(self._meta(call, model), hold_text=forced)


RESPONSES = Responses()


async def responses(request: Request) -> Response:
    return await serve_chat(request, RESPONSES)


async def stored(request: Request) -> Response:
    """GET/DELETE /v1/responses/{id} (and its input_items, cancel): corral keeps no responses."""
    gw: Gateway = request.app.state.gateway
    if not gw.authorized(request):
        return error_response("openai", 401, "authentication_error", "missing or invalid API key")
    message = "this gateway keeps no responses (store is always false): there is nothing to retrieve, cancel or delete"
    return error_response("openai", 404, "not_found_error", message)
