"""The server side of Anthropic's Messages API (the reverse of :mod:`corral.providers.anthropic`), so
Anthropic clients such as Claude Code can use any corral provider. Pure translation, no I/O.

Bad input raises :class:`~corral.gateway.wire_errors.WireError` (400) whose message starts with the
field's path in Anthropic's style ("messages.0.content.1.type: ..."), also given as its ``param``.

* ``system`` (string or text blocks) becomes one system message; user text blocks are joined by a
  blank line, assistant text blocks concatenated; thinking -> reasoning; redacted_thinking dropped.
* A user turn's tool_result blocks become tool messages, then one user message holds the turn's
  other blocks plus any images the tool results carried. ``is_error`` results read "Error: <text>".
* ``thinking`` ({type: enabled, budget_tokens} / disabled / adaptive) becomes corral's thinking
  fields (llama.cpp: enable_thinking and thinking_budget_tokens); ``top_k`` goes to extra_body,
  ``output_config.format`` (json_schema) to response_format; metadata, effort, cache_control,
  context_management, disable_parallel_tool_use and unknown fields are ignored, and so is Claude Code's
  per-request billing line in ``system`` (it would defeat llama.cpp's prompt cache); server tools (a
  ``type`` like "web_search_20250305") are refused.
* Answers: reasoning is a ``thinking`` block with a signature (corral's, so the SDKs accept it and a
  client may send the block back in its history); a stop string that ended the answer is
  ``stop_reason: "stop_sequence"`` with the string. Tool calls were repaired and checked by corral
  (:mod:`corral.toolcalls`): one that could not be made valid arrives as text, never as tool_use.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import ConfigurationError
from ...events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallEnd
from ...providers.base import ChatRequest, build_chat_request
from ...types import ChatResponse, ContentPart, ImagePart, Message, TextPart, ToolCall, Usage
from ..openai.fields import sse_json
from ..wire_errors import STATUS_KIND, WireError, anthropic_error, config_error

__all__ = [
    "AnthropicEventWriter",
    "anthropic_response",
    "anthropic_usage",
    "chat_request_from_anthropic",
    "count_tokens_request",
    "stop_reason",
    "tool_input",
]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_ANTHROPIC_STOPS = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded"}
)


def _need(ok: bool, path: str, problem: str) -> None:
    if not ok:
        raise WireError(400, f"{path}: {problem}", param=path)


def _str(block: Mapping[str, Any], key: str, at: str, *, nonempty: bool = False) -> str:
    v = block.get(key)
    ok = isinstance(v, str) and (bool(v) or not nonempty)
    _need(ok, f"{at}.{key}", "Field required" if v is None else f"must be a {'non-empty ' if nonempty else ''}string")
    return v  # type: ignore[return-value]


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _number(b: Mapping[str, Any], key: str, hi: float) -> Any:
    v = b.get(key)
    ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= hi)
    _need(ok, key, f"must be a number between 0 and {hi:g}, got {v!r}")
    return v


# -- request ---------------------------------------------------------------------------------------------------
def _blocks(content: Any, path: str) -> list[Mapping[str, Any]]:
    _need(isinstance(content, list), path, "must be a string or an array of content blocks")
    for j, block in enumerate(content):
        _need(isinstance(block, Mapping), f"{path}.{j}", "must be an object")
    return content  # type: ignore[no-any-return]


def _image(block: Mapping[str, Any], at: str) -> ImagePart:
    src, where = block.get("source"), f"{at}.source"
    if not isinstance(src, Mapping):
        raise WireError(400, f"{where}: must be an object", param=where)
    kind = src.get("type")
    if kind == "base64":
        return ImagePart(f"data:{_str(src, 'media_type', where, nonempty=True)};base64,{_str(src, 'data', where)}")
    _need(kind == "url", f"{where}.type", f"must be 'base64' or 'url', got {kind!r}")
    url = _str(src, "url", where)
    _need(url.startswith(("http://", "https://")), f"{where}.url", "must be an http(s) URL")
    return ImagePart(url)


def _tool_result(block: Mapping[str, Any], at: str) -> tuple[Message, list[ImagePart]]:
    call_id = _str(block, "tool_use_id", at, nonempty=True)
    content = block.get("content")
    texts = [content] if isinstance(content, str) else []
    images: list[ImagePart] = []
    for k, part in enumerate(_blocks(content, f"{at}.content") if content is not None and not texts else ()):
        where, kind = f"{at}.content.{k}", part.get("type")
        _need(kind in ("text", "image"), f"{where}.type", f"must be 'text' or 'image', got {kind!r}")
        if kind == "text":
            texts.append(_str(part, "text", where))
        else:
            images.append(_image(part, where))
    _need(isinstance(block.get("is_error", False), bool), f"{at}.is_error", "must be a boolean")
    text = "\n\n".join(t for t in texts if t)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return Message("tool", text, tool_call_id=call_id), images


def _user(content: Any, path: str) -> list[Message]:
    if isinstance(content, str):
        return [Message("user", content)]
    results: list[Message] = []
    parts: list[ContentPart] = []
    tool_images: list[ImagePart] = []
    for j, block in enumerate(_blocks(content, path)):
        at, kind = f"{path}.{j}", block.get("type")
        if kind == "text":
            text = _str(block, "text", at)
            parts += [TextPart(text)] if text else []
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            _need(kind == "tool_result", f"{at}.type", f"{kind!r} blocks are not supported in a user message")
            message, images = _tool_result(block, at)
            results.append(message)
            tool_images += images
    parts += tool_images
    if parts and all(isinstance(p, TextPart) for p in parts):
        results.append(Message("user", "\n\n".join(p.text for p in parts if isinstance(p, TextPart))))
    elif parts or not results:
        results.append(Message("user", tuple(parts) if parts else ""))
    return results


def _assistant(content: Any, path: str) -> Message:
    if isinstance(content, str):
        return Message("assistant", content)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(_blocks(content, path)):
        at, kind = f"{path}.{j}", block.get("type")
        if kind == "text":
            texts.append(_str(block, "text", at))
        elif kind == "thinking":
            thoughts.append(_str(block, "thinking", at))
        elif kind == "tool_use":
            args = block.get("input", {})
            _need(isinstance(args, Mapping), f"{at}.input", "must be an object")
            name = _str(block, "name", at, nonempty=True)
            calls.append(ToolCall(_str(block, "id", at, nonempty=True), name, json.dumps(args, ensure_ascii=False)))
        else:
            ok = kind == "redacted_thinking"
            _need(ok, f"{at}.type", f"{kind!r} blocks are not supported in an assistant message")
    return Message("assistant", "".join(texts) or None, tuple(calls), reasoning="".join(thoughts) or None)


def _messages(value: Any) -> tuple[list[Message], list[str]]:
    """The conversation, and the text of any system messages within it (Claude Code sends those
    mid-conversation); they join the system prompt, which every chat template can render."""
    _need(value is not None, "messages", "Field required")
    _need(isinstance(value, list) and bool(value), "messages", "must be a non-empty array of messages")
    out: list[Message] = []
    system: list[str] = []
    for i, m in enumerate(value):
        path = f"messages.{i}"
        _need(isinstance(m, Mapping), path, "must be an object")
        _need(m.get("content") is not None, f"{path}.content", "Field required")
        role = m.get("role")
        ok = role in ("user", "assistant", "system")
        _need(ok, f"{path}.role", f"must be 'user', 'assistant' or 'system', got {role!r}")
        if role == "user":
            out += _user(m["content"], f"{path}.content")
        elif role == "system":
            system.append(_system(m["content"], f"{path}.content"))
        else:
            out.append(_assistant(m["content"], f"{path}.content"))
    _need(bool(out), "messages", "must hold at least one user or assistant message")
    return out, system


# Claude Code's first system block is an attribution line for Anthropic's billing whose hash follows the
# conversation's first prompt ("x-anthropic-billing-header: cc_version=2.1.197.1c6; …"): ahead of the
# system prompt it keeps llama.cpp from reusing a cached prompt across conversations (thousands of tokens
# processed again on each `claude -p`). It says nothing to a model.
_BILLING = "x-anthropic-billing-header:"


def _system(value: Any, path: str = "system") -> str:
    if value is None or isinstance(value, str):
        return value or ""
    texts = []
    for j, block in enumerate(_blocks(value, path)):
        _need(block.get("type") == "text", f"{path}.{j}.type", f"must be 'text', got {block.get('type')!r}")
        text = _str(block, "text", f"{path}.{j}")
        if not text.startswith(_BILLING):
            texts.append(text)
    return "\n\n".join(t for t in texts if t)


def _tools(value: Any) -> list[dict[str, Any]]:
    _need(value is None or isinstance(value, list), "tools", "must be an array of tools")
    out = []
    for i, tool in enumerate(value or ()):
        at = f"tools.{i}"
        _need(isinstance(tool, Mapping), at, "must be an object")
        kind = tool.get("type")
        _need(kind in (None, "custom"), at, f"tool type {kind!r} is not supported by this gateway (only client tools)")
        fn: dict[str, Any] = {"name": _str(tool, "name", at, nonempty=True)}
        if tool.get("description") is not None:
            fn["description"] = _str(tool, "description", at)
        schema = tool.get("input_schema")
        _need(isinstance(schema, Mapping), f"{at}.input_schema", "must be a JSON schema object")
        out.append({"type": "function", "function": fn | {"parameters": dict(schema)}})
    return out


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> Any:
    if value is None:
        return None
    _need(isinstance(value, Mapping), "tool_choice", "must be an object")
    kind = value.get("type")
    _need(kind in ("auto", "any", "tool", "none"), "tool_choice.type", f"must be auto, any, tool or none, got {kind!r}")
    if kind in ("auto", "none"):
        return kind if tools else None  # nothing to choose from: the same as no tools
    _need(bool(tools), "tool_choice", f"type {kind!r} needs tools")
    if kind == "any":
        return "required"
    name = value.get("name")
    _need(name in {t["function"]["name"] for t in tools}, "tool_choice.name", f"must name a tool, got {name!r}")
    return {"type": "function", "function": {"name": name}}


def _output_format(b: Mapping[str, Any]) -> dict[str, Any] | None:
    """Structured output: ``output_config.format`` (or the older ``output_format``) as a response_format."""
    config = b.get("output_config")
    fmt = config.get("format") if isinstance(config, Mapping) else b.get("output_format")
    if fmt is None:
        return None
    path = "output_config.format" if isinstance(config, Mapping) else "output_format"
    ok = isinstance(fmt, Mapping) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), Mapping)
    _need(ok, path, "must be {'type': 'json_schema', 'schema': {...}}")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(fmt["schema"])}}


def _parse(body: Any, *, require_max_tokens: bool) -> ChatRequest:
    if not isinstance(body, Mapping):
        raise WireError(400, "the request body must be a JSON object")
    b = body
    model = b.get("model")
    _need(isinstance(model, str) and bool(model), "model", "Field required" if model is None else "must be a string")
    max_tokens = b.get("max_tokens")
    _need(max_tokens is not None or not require_max_tokens, "max_tokens", "Field required")
    _need(max_tokens is None or _is_int(max_tokens, 1), "max_tokens", f"must be a positive integer, got {max_tokens!r}")
    messages, inline_system = _messages(b.get("messages"))
    system = "\n\n".join(t for t in (_system(b.get("system")), *inline_system) if t)
    stop = b.get("stop_sequences")
    ok = stop is None or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    _need(ok, "stop_sequences", "must be an array of strings")
    _need(isinstance(b.get("stream", False), bool), "stream", "must be a boolean")
    tools = _tools(b.get("tools"))
    extra: dict[str, Any] = {}
    top_k = b.get("top_k")
    _need(top_k is None or _is_int(top_k, 0), "top_k", f"must be a non-negative integer, got {top_k!r}")
    if top_k is not None:
        extra["top_k"] = top_k
    thinking, budget = _thinking(b.get("thinking"))
    try:
        return build_chat_request(
            ([Message("system", system)] if system else []) + messages,
            response_format=_output_format(b),
            model=model,
            max_tokens=max_tokens,
            temperature=_number(b, "temperature", 1),
            top_p=_number(b, "top_p", 1),
            stop=stop,
            tools=tools,
            tool_choice=_tool_choice(b.get("tool_choice"), tools),
            extra_body=extra,
            thinking=thinking,
            thinking_budget=budget,
            parse_output=False,  # the model's text is relayed as written, with its true stop reason
        )
    except ConfigurationError as exc:
        raise config_error(exc) from None


def _thinking(value: Any) -> tuple[bool | None, int | None]:
    """Anthropic's ``thinking`` as (on/off/unsaid, budget)."""
    if value is None:
        return None, None
    _need(isinstance(value, Mapping), "thinking", "must be an object")
    kind = value.get("type")
    ok = kind in ("enabled", "disabled", "adaptive")
    _need(ok, "thinking.type", f"must be enabled, disabled or adaptive, got {kind!r}")
    if kind == "disabled":
        return False, None
    budget = value.get("budget_tokens")
    _need(budget is None or _is_int(budget, 1), "thinking.budget_tokens", f"must be a positive integer, got {budget!r}")
    return True, budget


def chat_request_from_anthropic(body: Any) -> ChatRequest:
    """A /v1/messages body as a ChatRequest (``model`` and ``max_tokens`` required)."""
    return _parse(body, require_max_tokens=True)


def count_tokens_request(body: Any) -> ChatRequest:
    """A /v1/messages/count_tokens body: the same fields, ``max_tokens`` not required."""
    return _parse(body, require_max_tokens=False)


# -- response ----------------------------------------------------------------------------------------------------
def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as a tool_use ``input`` object (see the module notes)."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_invalid_arguments": arguments}


#: what a thinking block's signature says: the SDKs require the field; corral checks none it is sent back
SIGNATURE = "corral"


def stop_reason(resp: ChatResponse) -> str:
    """corral's finish reason as Anthropic's stop_reason; tool calls always mean "tool_use"."""
    if resp.tool_calls and resp.finish_reason in ("stop", "tool_calls", "end_turn"):
        return "tool_use"
    if resp.stop_sequence is not None and resp.finish_reason in ("stop", "stop_sequence"):
        return "stop_sequence"
    reason = resp.finish_reason if resp.finish_reason in _ANTHROPIC_STOPS else _STOP.get(resp.finish_reason)
    if reason is None or (reason == "tool_use" and not resp.tool_calls):
        return "end_turn"
    return reason


def anthropic_usage(u: Usage) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens``; corral's prompt_tokens includes them."""
    return {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def _tool_use(call: ToolCall, n: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id or f"toolu_{n}", "name": call.name, "input": tool_input(call.arguments)}


def anthropic_response(resp: ChatResponse, *, model: str) -> dict[str, Any]:
    """A ``message`` object: thinking, text, then tool_use blocks."""
    content: list[dict[str, Any]] = []
    if resp.reasoning:
        content.append({"type": "thinking", "thinking": resp.reasoning, "signature": SIGNATURE})
    if resp.content:
        content.append({"type": "text", "text": resp.content})
    content += [_tool_use(c, n) for n, c in enumerate(resp.tool_calls)]
    return {
        "id": resp.id if resp.id.startswith("msg_") else "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(resp),
        "stop_sequence": _matched(resp),
        "usage": anthropic_usage(resp.usage),
    }


def _matched(resp: ChatResponse) -> str | None:
    return resp.stop_sequence if stop_reason(resp) == "stop_sequence" else None


def _frame(kind: str, obj: Mapping[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {sse_json(obj)}\n\n".encode()


class AnthropicEventWriter:
    """corral stream events -> Messages API SSE events. Text and thinking stream as they come, a new
    block whenever the kind changes; a tool call goes out whole (one tool_use block, complete input)
    when it ends, since partial input cannot be taken back and invalid JSON would break the client's
    parser. ``event()`` sends ``start()`` first if needed; ``event(Done(r))`` is ``finish(r)``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        model: str,
        id: str,
        input_tokens: int = 0,
        *,
        usage: Callable[[], Usage | None] | None = None,
        hold_content: bool = False,
    ) -> None:
        self.model = model
        self.id = id
        self.input_tokens = input_tokens
        self.usage = usage  # the usage known so far, read when message_start goes out
        self.hold_content = hold_content  # a forced tool call: text only if no call came
        self._held: list[str] = []
        self._index = -1
        self._open: str | None = None
        self._started = False
        self._finished = False
        self._seen: set[str] = set()
        self._calls_sent: Counter[ToolCall] = Counter()
        self._tool_blocks = 0

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        known = self.usage() if self.usage is not None else None
        if known is not None:
            usage = {**anthropic_usage(known), "output_tokens": 0}
        else:
            usage = {"input_tokens": self.input_tokens, "output_tokens": 0}
        message: dict[str, Any] = {"id": self.id, "type": "message", "role": "assistant", "model": self.model}
        message |= {"content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return _frame("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        out = b""
        if self._open == "thinking":  # as Anthropic does: the signature comes last, before the stop
            out = self._delta({"type": "signature_delta", "signature": SIGNATURE})
        self._open = None
        return out + _frame("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _block(self, block: Mapping[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = str(block["type"])
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        return out + _frame("content_block_start", start)

    def _delta(self, delta: Mapping[str, Any]) -> bytes:
        return _frame("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _stream(self, kind: str, text: str) -> bytes:
        self._seen.add(kind)
        if kind == "text":
            opened = b"" if self._open == "text" else self._block({"type": "text", "text": ""})
            return opened + self._delta({"type": "text_delta", "text": text})
        opened = b"" if self._open == "thinking" else self._block({"type": "thinking", "thinking": "", "signature": ""})
        return opened + self._delta({"type": "thinking_delta", "thinking": text})

    def _tool(self, call: ToolCall) -> bytes:
        block = _tool_use(call, self._tool_blocks)
        self._tool_blocks += 1
        out = self._block({**block, "input": {}})
        return out + self._delta({"type": "input_json_delta", "partial_json": sse_json(block["input"])}) + self._close()

    def event(self, e: StreamEvent) -> bytes:
        if self._finished:
            return b""
        head = self.start()
        if isinstance(e, ContentDelta) and e.text:
            if self.hold_content:
                self._seen.add("text")
                self._held.append(e.text)
                return head
            return head + self._stream("text", e.text)
        if isinstance(e, ReasoningDelta) and e.text:
            return head + self._stream("thinking", e.text)
        if isinstance(e, ToolCallEnd):
            self._calls_sent[e.call] += 1
            return head + self._tool(e.call)
        if isinstance(e, Done):
            return head + self.finish(e.response)
        return head  # ToolCallDelta: the call goes out whole when it ends

    def finish(self, resp: ChatResponse) -> bytes:
        """What of ``resp`` was not streamed (calls not ended, text or reasoning never streamed), then
        message_delta (stop reason, final usage) and message_stop."""
        if self._finished:
            return b""
        out = self.start()
        if resp.reasoning and "thinking" not in self._seen:
            out += self._stream("thinking", resp.reasoning)
        if resp.content and "text" not in self._seen:
            out += self._stream("text", resp.content)
        if self._held and not resp.tool_calls:
            out += self._stream("text", "".join(self._held))
        for call in resp.tool_calls:
            if self._calls_sent[call] > 0:
                self._calls_sent[call] -= 1
            else:
                out += self._tool(call)
        out += self._close()
        self._finished = True
        delta = {"stop_reason": stop_reason(resp), "stop_sequence": _matched(resp)}
        out += _frame("message_delta", {"type": "message_delta", "delta": delta, "usage": anthropic_usage(resp.usage)})
        return out + _frame("message_stop", {"type": "message_stop"})

    def ping(self) -> bytes:
        return _frame("ping", {"type": "ping"})

    def end(self) -> bytes:
        return b""  # message_stop went out with Done

    def error(self, status: int, kind: str, message: str) -> bytes:
        """An ``error`` event, for a failure after the stream started."""
        return _frame("error", anthropic_error(STATUS_KIND.get(kind, status), message, kind=kind))
