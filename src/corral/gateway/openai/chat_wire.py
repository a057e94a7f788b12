"""/v1/chat/completions on the server side: the client's request -> corral's ChatRequest, corral's
answer -> ``chat.completion`` or ``chat.completion.chunk`` frames. Pure translation: no I/O. Null-valued
optional fields mean "not given", as in OpenAI's API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallEnd
from ...providers.base import REASONING_EFFORTS, ChatRequest, build_chat_request
from ...types import ChatResponse, ToolCall
from ..wire_errors import config_error, openai_error
from .fields import (
    bad,
    common_fields,
    is_int,
    json_object,
    need,
    number,
    positive_int,
    sse_json,
    stop_list,
    timings_dict,
    typed,
    usage_dict,
)

__all__ = ["OpenAIChunkWriter", "chat_request_from_openai", "openai_response", "openai_stream_flags"]

_ROLES = ("system", "developer", "user", "assistant", "tool")
_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
#: chat fields mapped onto ChatRequest or handled by the gateway; every other field goes to extra_body
_CHAT_FIELDS = frozenset(
    {
        "messages", "model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "seed", "tools", "tool_choice", "response_format", "grammar",
        "logprobs", "top_logprobs", "reasoning_effort",
    }
)  # fmt: skip
_TOOL_CHOICE = "'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}"


# -- /v1/chat/completions: request ---------------------------------------------------------------------------
def _check_parts(content: list[Any], role: str, where: str) -> None:
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        need(isinstance(part, Mapping), f"{at} must be an object", at)
        kind = part.get("type")
        if kind == "text":
            need(isinstance(part.get("text"), str), f"{at}.text must be a string", f"{at}.text")
            continue
        need(kind == "image_url", f"{at}.type must be 'text' or 'image_url', got {kind!r}", f"{at}.type")
        need(role == "user", f"{at}: images are only allowed in user messages", f"{at}.type")
        img = part.get("image_url")
        url = img.get("url") if isinstance(img, Mapping) else img
        need(isinstance(url, str) and bool(url), f"{at}.image_url.url must be a string", f"{at}.image_url.url")


def _check_message(m: Any, i: int) -> None:
    if not isinstance(m, Mapping):
        raise bad(f"messages[{i}] must be an object", f"messages[{i}]")
    role = m.get("role")
    if role not in _ROLES:
        raise bad(f"messages[{i}].role must be one of {', '.join(_ROLES)}; got {role!r}", f"messages[{i}].role")
    content = m.get("content")
    if not isinstance(content, str):  # a string passes every content check
        at = f"messages[{i}].content"
        need(content is not None or role == "assistant", f"{at} is required for a {role} message", at)
        need(content is None or isinstance(content, (str, list)), f"{at} must be a string or an array of parts", at)
        if isinstance(content, list):
            _check_parts(content, role, f"messages[{i}]")
    calls = m.get("tool_calls")
    if calls is not None:
        at = f"messages[{i}].tool_calls"
        need(role == "assistant", f"{at} is only allowed in assistant messages", at)
        need(isinstance(calls, list), f"{at} must be an array", at)
        for j, tc in enumerate(calls):
            fn = tc.get("function") if isinstance(tc, Mapping) else None
            ok = isinstance(fn, Mapping) and isinstance(fn.get("name"), str) and bool(fn["name"])
            need(ok, f"{at}[{j}].function.name must be a non-empty string", f"{at}[{j}].function.name")
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not (isinstance(call_id, str) and bool(call_id)):
            raise bad(f"messages[{i}].tool_call_id is required for a tool message", f"messages[{i}].tool_call_id")
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise bad(f"messages[{i}].name must be a string", f"messages[{i}].name")


def _messages(value: Any) -> list[Mapping[str, Any]]:
    need(value is not None, "messages is required", "messages")
    need(isinstance(value, list), "messages must be an array of message objects", "messages")
    need(bool(value), "messages must contain at least one message", "messages")
    for i, m in enumerate(value):
        _check_message(m, i)
    return value  # type: ignore[no-any-return]


def _tools(value: Any) -> list[Mapping[str, Any]]:
    need(value is None or isinstance(value, list), "tools must be an array of tool objects", "tools")
    for i, t in enumerate(value or ()):
        at = f"tools[{i}]"
        need(isinstance(t, Mapping), f"{at} must be an object", at)
        kind = t.get("type", "function")
        need(kind == "function", f"{at}.type must be 'function', got {kind!r}", f"{at}.type")
        fn = t.get("function")
        need(isinstance(fn, Mapping), f"{at}.function must be an object", f"{at}.function")
        ok = isinstance(fn.get("name"), str) and bool(fn["name"])
        need(ok, f"{at}.function.name must be a non-empty string", f"{at}.function.name")
        ok = fn.get("parameters") is None or isinstance(fn["parameters"], Mapping)
        need(ok, f"{at}.function.parameters must be a JSON schema object", f"{at}.function.parameters")
    return list(value or ())


def _tool_choice(value: Any, tools: list[Mapping[str, Any]]) -> Any:
    if value is None or value in ("auto", "none"):
        return value if tools else None  # nothing to choose from: the same as no tools
    named = isinstance(value, Mapping) and value.get("type") == "function"
    need(value == "required" or named, f"tool_choice must be {_TOOL_CHOICE}, got {value!r}", "tool_choice")
    need(bool(tools), "tool_choice is only allowed when tools are given", "tool_choice")
    if value == "required":
        return value
    fn = value.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else None
    ok = name in {t["function"]["name"] for t in tools}
    need(ok, f"tool_choice.function.name must name one of the tools, got {name!r}", "tool_choice.function.name")
    return {"type": "function", "function": {"name": name}}


def _response_format(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    need(isinstance(value, Mapping), "response_format must be an object", "response_format")
    kind = value.get("type")
    if kind == "json_object" and isinstance(value.get("schema"), Mapping):  # llama.cpp's own form
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(value["schema"])}}
    ok = kind in ("text", "json_object", "json_schema")
    message = f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}"
    need(ok, message, "response_format.type")
    return value  # type: ignore[no-any-return]


def chat_request_from_openai(body: Any) -> ChatRequest:
    """A /v1/chat/completions body as a ChatRequest. Fields corral has no name for go to extra_body
    (null ones dropped); ``stream``, ``stream_options``, ``model`` and ``n`` never do.
    ``max_completion_tokens`` wins over ``max_tokens``."""
    b = json_object(body)
    messages = _messages(b.get("messages"))
    common_fields(b)
    opts = b.get("stream_options")
    ok = opts is None or (isinstance(opts, Mapping) and isinstance(opts.get("include_usage", False), bool))
    need(ok, "stream_options must be an object like {'include_usage': true}", "stream_options")
    newer = positive_int(b, "max_completion_tokens")
    older = positive_int(b, "max_tokens")
    tools = _tools(b.get("tools"))
    logprobs = typed(b, "logprobs", bool, "a boolean")
    top = b.get("top_logprobs")
    if top is not None and not (is_int(top) and 0 <= top <= 20):
        raise bad(f"top_logprobs must be an integer from 0 to 20, got {top!r}", "top_logprobs")
    need(top is None or logprobs is True, "top_logprobs needs logprobs: true", "top_logprobs")
    effort = b.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise bad(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {effort!r}", "reasoning_effort")
    try:
        return build_chat_request(
            messages,
            model=b.get("model") or None,
            max_tokens=newer if newer is not None else older,
            temperature=number(b, "temperature", 0, 2),
            top_p=number(b, "top_p", 0, 1),
            stop=stop_list(b),
            seed=typed(b, "seed", int, "an integer"),
            tools=tools,
            tool_choice=_tool_choice(b.get("tool_choice"), tools),
            response_format=_response_format(b.get("response_format")),
            grammar=typed(b, "grammar", str, "a string"),
            extra_body={k: v for k, v in b.items() if k not in _CHAT_FIELDS and v is not None},
            reasoning_effort=effort,
            logprobs=bool(logprobs),
            top_logprobs=top,
            parse_output=False,  # the model's text is relayed as written, with its true finish reason
        )
    except ConfigurationError as exc:
        raise config_error(exc) from None


def openai_stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(stream, stream_options.include_usage) of a body chat_request_from_openai accepted."""
    opts = body.get("stream_options")
    return body.get("stream") is True, isinstance(opts, Mapping) and opts.get("include_usage") is True


# -- /v1/chat/completions: response --------------------------------------------------------------------------
def _finish(resp: ChatResponse) -> str:
    reason = resp.finish_reason if resp.finish_reason in _FINISH else "stop"
    return "tool_calls" if resp.tool_calls and reason == "stop" else reason


def _call(c: ToolCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}


def openai_response(resp: ChatResponse, *, model: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": resp.content or (None if resp.tool_calls else "")}
    if resp.reasoning:
        message["reasoning_content"] = resp.reasoning
    if resp.tool_calls:
        message["tool_calls"] = [_call(c) for c in resp.tool_calls]
    logprobs = {"content": list(resp.logprobs)} if resp.logprobs is not None else None
    out: dict[str, Any] = {
        "id": resp.id or "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": _finish(resp)}],
        "usage": usage_dict(resp.usage),
    }
    if resp.timings is not None:
        out["timings"] = timings_dict(resp.timings)
    return out


class OpenAIChunkWriter:
    """corral stream events -> ``chat.completion.chunk`` SSE frames.

    ``first()`` is the role chunk; ``event()`` sends it too if it was not sent yet, so the gateway may
    wait for the first upstream event (and answer an early upstream failure with a real HTTP error).
    A tool call goes out whole when it ends (one delta: id, name, complete arguments), since corral
    repairs and checks it first; with ``hold_content`` (a request that forces a tool call) text is
    held back and sent only if no call came. ``event(Done(r))`` first sends what of ``r`` was never
    streamed (so ``Done`` alone turns a whole response into a stream); after it, ``event()`` returns b"".
    """

    media_type = "text/event-stream"

    def __init__(
        self, model: str, created: int, id: str, include_usage: bool = False, *, hold_content: bool = False
    ) -> None:
        self.model = model
        self.created = created
        self.id = id
        self.include_usage = include_usage
        self.hold_content = hold_content
        self._held: list[str] = []
        self._started = False
        self._finished = False
        self._seen: set[str] = set()
        self._calls_sent: list[ToolCall] = []

    @staticmethod
    def _frame(obj: Mapping[str, Any]) -> bytes:
        return f"data: {sse_json(obj)}\n\n".encode()

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": dict(delta), "logprobs": logprobs, "finish_reason": finish}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}  # fmt: skip

    def first(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._frame(self._chunk({"role": "assistant", "content": ""}))

    def _tool(self, call: ToolCall) -> bytes:
        index = len(self._calls_sent)
        self._calls_sent.append(call)
        delta = {"index": index, "id": call.id or f"call_{index}", "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}  # fmt: skip
        return self._frame(self._chunk({"tool_calls": [delta]}))

    def event(self, e: StreamEvent) -> bytes:
        if self._finished:
            return b""
        head = self.first()
        if isinstance(e, ContentDelta) and e.text:
            self._seen.add("content")
            if self.hold_content:
                self._held.append(e.text)
                return head
            logprobs = {"content": list(e.logprobs)} if e.logprobs else None
            return head + self._frame(self._chunk({"content": e.text}, logprobs=logprobs))
        if isinstance(e, ReasoningDelta) and e.text:
            self._seen.add("reasoning_content")
            return head + self._frame(self._chunk({"reasoning_content": e.text}))
        if isinstance(e, ToolCallEnd):
            return head + self._tool(e.call)
        if isinstance(e, Done):
            return head + self._finish_with(e.response)
        return head  # ToolCallDelta (the call goes out whole when it ends), empty deltas

    def _finish_with(self, r: ChatResponse) -> bytes:
        out = b""
        if r.reasoning and "reasoning_content" not in self._seen:
            out += self.event(ReasoningDelta(r.reasoning))
        if r.content and "content" not in self._seen:
            out += self.event(ContentDelta(r.content, r.logprobs))
        if self._held and not r.tool_calls:
            self.hold_content = False
            out += self.event(ContentDelta("".join(self._held)))
        sent = list(self._calls_sent)
        for call in r.tool_calls:
            if call in sent:
                sent.remove(call)
            else:
                out += self._tool(call)
        self._finished = True
        last = self._chunk({}, _finish(r))
        if r.timings is not None:
            last["timings"] = timings_dict(r.timings)
        out += self._frame(last)
        if self.include_usage:
            out += self._frame({**self._chunk({}), "choices": [], "usage": usage_dict(r.usage)})
        return out

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    start = first
    end = done

    def error(self, status: int, kind: str, message: str) -> bytes:
        """A failure after the stream started. ``code`` is the HTTP status when the kind has no code of
        its own, as llama-server does: corral's own client reads it as the status."""
        body = openai_error(status, message, kind=kind)
        if body["error"]["code"] is None:
            body["error"]["code"] = status
        return self._frame(body)
