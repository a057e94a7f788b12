"""The server side of OpenAI's API: client requests -> corral requests, corral results -> OpenAI bodies.

Pure translation: no I/O. Bad input raises :class:`~corral.gateway.wire_errors.WireError` (400) with a
message and ``param`` naming the field, the way OpenAI's API reports it. Null-valued optional fields
mean "not given", as in OpenAI's API.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ..events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta
from ..providers.base import ChatRequest, build_chat_request
from ..types import ChatResponse, Completion, Embeddings, Reranking, Timings, ToolCall, Usage
from .wire_errors import WireError, config_error, openai_error

__all__ = [
    "OpenAIChunkWriter",
    "chat_request_from_openai",
    "completion_request_from_openai",
    "embedding_inputs_from_openai",
    "openai_completion_response",
    "openai_embeddings_response",
    "openai_models",
    "openai_response",
    "openai_stream_flags",
    "rerank_request_from_wire",
    "rerank_response",
    "sse_json",
    "timings_dict",
]

_ROLES = ("system", "developer", "user", "assistant", "tool")
_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
#: chat fields mapped onto ChatRequest or handled by the gateway; every other field goes to extra_body
_CHAT_FIELDS = frozenset(
    {
        "messages", "model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "seed", "tools", "tool_choice", "response_format", "grammar",
    }
)  # fmt: skip
_COMPLETION_FIELDS = frozenset({"prompt", "model", "stream", "stream_options", "n"})
_TOOL_CHOICE = "'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}"


def sse_json(obj: Any) -> str:
    """Compact JSON for a wire frame, non-ASCII kept as is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


_TIMINGS = (
    ("prompt_n", "prompt_tokens"), ("prompt_ms", "prompt_ms"), ("prompt_per_second", "prompt_per_second"),
    ("predicted_n", "predicted_tokens"), ("predicted_ms", "predicted_ms"),
    ("predicted_per_second", "predicted_per_second"), ("cache_n", "cached_tokens"),
)  # fmt: skip


def timings_dict(t: Timings) -> dict[str, Any]:
    """llama.cpp's ``timings`` object, with its own key names."""
    return {key: getattr(t, attr) for key, attr in _TIMINGS}


# -- validation helpers --------------------------------------------------------------------------------------
def _need(ok: bool, message: str, param: str | None) -> None:
    if not ok:
        raise WireError(400, message, param=param)


def _bad(message: str, param: str | None) -> WireError:
    return WireError(400, message, param=param)


# The checks on every request's path raise with ``_bad`` only once a value fails: an f-string
# message built eagerly for ``_need`` costs more than the check itself.


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _object(body: Any) -> Mapping[str, Any]:
    _need(isinstance(body, Mapping), "the request body must be a JSON object", None)
    return body  # type: ignore[no-any-return]


def _number(b: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = b.get(key)
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi):
        return v
    raise _bad(f"{key} must be a number between {lo:g} and {hi:g}, got {v!r}", key)


def _positive_int(b: Mapping[str, Any], key: str) -> int | None:
    v = b.get(key)
    if v is None or (_is_int(v) and v >= 1):
        return v
    raise _bad(f"{key} must be a positive integer, got {v!r}", key)


def _typed(b: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    v = b.get(key)
    if v is None or (isinstance(v, kind) and (kind is bool or not isinstance(v, bool))):
        return v
    raise _bad(f"{key} must be {what}, got {v!r}", key)


def _stop(b: Mapping[str, Any]) -> list[str]:
    v = b.get("stop")
    if v is None or isinstance(v, str):
        return [v] if v else []
    ok = isinstance(v, list) and all(isinstance(s, str) for s in v)
    _need(ok, "stop must be a string or an array of strings", "stop")
    return list(v)


def _common(b: Mapping[str, Any]) -> None:
    """Fields every generating route checks the same way."""
    _typed(b, "model", str, "a string")
    n = b.get("n")
    if not (n is None or (_is_int(n) and n == 1)):
        raise _bad(f"n must be 1: this gateway returns a single choice, got {n!r}", "n")
    _typed(b, "stream", bool, "a boolean")


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


# -- /v1/chat/completions: request ---------------------------------------------------------------------------
def _check_parts(content: list[Any], role: str, where: str) -> None:
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        _need(isinstance(part, Mapping), f"{at} must be an object", at)
        kind = part.get("type")
        if kind == "text":
            _need(isinstance(part.get("text"), str), f"{at}.text must be a string", f"{at}.text")
            continue
        _need(kind == "image_url", f"{at}.type must be 'text' or 'image_url', got {kind!r}", f"{at}.type")
        _need(role == "user", f"{at}: images are only allowed in user messages", f"{at}.type")
        img = part.get("image_url")
        url = img.get("url") if isinstance(img, Mapping) else img
        _need(isinstance(url, str) and bool(url), f"{at}.image_url.url must be a string", f"{at}.image_url.url")


def _check_message(m: Any, i: int) -> None:
    if not isinstance(m, Mapping):
        raise _bad(f"messages[{i}] must be an object", f"messages[{i}]")
    role = m.get("role")
    if role not in _ROLES:
        raise _bad(f"messages[{i}].role must be one of {', '.join(_ROLES)}; got {role!r}", f"messages[{i}].role")
    content = m.get("content")
    if not isinstance(content, str):  # a string passes every content check
        at = f"messages[{i}].content"
        _need(content is not None or role == "assistant", f"{at} is required for a {role} message", at)
        _need(content is None or isinstance(content, (str, list)), f"{at} must be a string or an array of parts", at)
        if isinstance(content, list):
            _check_parts(content, role, f"messages[{i}]")
    calls = m.get("tool_calls")
    if calls is not None:
        at = f"messages[{i}].tool_calls"
        _need(role == "assistant", f"{at} is only allowed in assistant messages", at)
        _need(isinstance(calls, list), f"{at} must be an array", at)
        for j, tc in enumerate(calls):
            fn = tc.get("function") if isinstance(tc, Mapping) else None
            ok = isinstance(fn, Mapping) and isinstance(fn.get("name"), str) and bool(fn["name"])
            _need(ok, f"{at}[{j}].function.name must be a non-empty string", f"{at}[{j}].function.name")
    if role == "tool":
        call_id = m.get("tool_call_id")
        if not (isinstance(call_id, str) and bool(call_id)):
            raise _bad(f"messages[{i}].tool_call_id is required for a tool message", f"messages[{i}].tool_call_id")
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise _bad(f"messages[{i}].name must be a string", f"messages[{i}].name")


def _messages(value: Any) -> list[Mapping[str, Any]]:
    _need(value is not None, "messages is required", "messages")
    _need(isinstance(value, list), "messages must be an array of message objects", "messages")
    _need(bool(value), "messages must contain at least one message", "messages")
    for i, m in enumerate(value):
        _check_message(m, i)
    return value  # type: ignore[no-any-return]


def _tools(value: Any) -> list[Mapping[str, Any]]:
    _need(value is None or isinstance(value, list), "tools must be an array of tool objects", "tools")
    for i, t in enumerate(value or ()):
        at = f"tools[{i}]"
        _need(isinstance(t, Mapping), f"{at} must be an object", at)
        kind = t.get("type", "function")
        _need(kind == "function", f"{at}.type must be 'function', got {kind!r}", f"{at}.type")
        fn = t.get("function")
        _need(isinstance(fn, Mapping), f"{at}.function must be an object", f"{at}.function")
        ok = isinstance(fn.get("name"), str) and bool(fn["name"])
        _need(ok, f"{at}.function.name must be a non-empty string", f"{at}.function.name")
        ok = fn.get("parameters") is None or isinstance(fn["parameters"], Mapping)
        _need(ok, f"{at}.function.parameters must be a JSON schema object", f"{at}.function.parameters")
    return list(value or ())


def _tool_choice(value: Any, tools: list[Mapping[str, Any]]) -> Any:
    if value is None or value in ("auto", "none"):
        return value if tools else None  # nothing to choose from: the same as no tools
    named = isinstance(value, Mapping) and value.get("type") == "function"
    _need(value == "required" or named, f"tool_choice must be {_TOOL_CHOICE}, got {value!r}", "tool_choice")
    _need(bool(tools), "tool_choice is only allowed when tools are given", "tool_choice")
    if value == "required":
        return value
    fn = value.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else None
    ok = name in {t["function"]["name"] for t in tools}
    _need(ok, f"tool_choice.function.name must name one of the tools, got {name!r}", "tool_choice.function.name")
    return {"type": "function", "function": {"name": name}}


def _response_format(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    _need(isinstance(value, Mapping), "response_format must be an object", "response_format")
    kind = value.get("type")
    if kind == "json_object" and isinstance(value.get("schema"), Mapping):  # llama.cpp's own form
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(value["schema"])}}
    ok = kind in ("text", "json_object", "json_schema")
    message = f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}"
    _need(ok, message, "response_format.type")
    return value  # type: ignore[no-any-return]


def chat_request_from_openai(body: Any) -> ChatRequest:
    """A /v1/chat/completions body as a ChatRequest. Fields corral has no name for go to extra_body
    (null ones dropped); ``stream``, ``stream_options``, ``model`` and ``n`` never do.
    ``max_completion_tokens`` wins over ``max_tokens``."""
    b = _object(body)
    messages = _messages(b.get("messages"))
    _common(b)
    opts = b.get("stream_options")
    ok = opts is None or (isinstance(opts, Mapping) and isinstance(opts.get("include_usage", False), bool))
    _need(ok, "stream_options must be an object like {'include_usage': true}", "stream_options")
    newer = _positive_int(b, "max_completion_tokens")
    older = _positive_int(b, "max_tokens")
    tools = _tools(b.get("tools"))
    try:
        return build_chat_request(
            messages,
            model=b.get("model") or None,
            max_tokens=newer if newer is not None else older,
            temperature=_number(b, "temperature", 0, 2),
            top_p=_number(b, "top_p", 0, 1),
            stop=_stop(b),
            seed=_typed(b, "seed", int, "an integer"),
            tools=tools,
            tool_choice=_tool_choice(b.get("tool_choice"), tools),
            response_format=_response_format(b.get("response_format")),
            grammar=_typed(b, "grammar", str, "a string"),
            extra_body={k: v for k, v in b.items() if k not in _CHAT_FIELDS and v is not None},
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
    out: dict[str, Any] = {
        "id": resp.id or "chatcmpl-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(resp)}],
        "usage": _usage(resp.usage),
    }
    if resp.timings is not None:
        out["timings"] = timings_dict(resp.timings)
    return out


class OpenAIChunkWriter:
    """corral stream events -> ``chat.completion.chunk`` SSE frames.

    ``first()`` is the role chunk; ``event()`` sends it too if it was not sent yet, so the gateway may
    wait for the first upstream event (and answer an early upstream failure with a real HTTP error).
    ``event(Done(r))`` first sends what of ``r`` was never streamed (so ``Done`` alone turns a whole
    response into a stream); after it, ``event()`` returns b"".
    """

    def __init__(self, model: str, created: int, id: str, include_usage: bool = False) -> None:
        self.model = model
        self.created = created
        self.id = id
        self.include_usage = include_usage
        self._started = False
        self._finished = False
        self._seen: set[str] = set()
        self._ids_sent: set[int] = set()
        self._names_sent: set[int] = set()

    @staticmethod
    def _frame(obj: Mapping[str, Any]) -> bytes:
        return f"data: {sse_json(obj)}\n\n".encode()

    def _chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [choice]}  # fmt: skip

    def first(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._frame(self._chunk({"role": "assistant", "content": ""}))

    def _tool_delta(self, e: ToolCallDelta) -> dict[str, Any]:
        # id, type and name go out once per call: the SDKs concatenate string fields across chunks.
        call: dict[str, Any] = {"index": e.index}
        fn: dict[str, Any] = {}
        if e.index not in self._ids_sent:
            self._ids_sent.add(e.index)
            call |= {"id": e.id or f"call_{e.index}", "type": "function"}
        if e.name and e.index not in self._names_sent:
            self._names_sent.add(e.index)
            fn["name"] = e.name
        call["function"] = fn | {"arguments": e.arguments}
        return {"tool_calls": [call]}

    def event(self, e: StreamEvent) -> bytes:
        if self._finished:
            return b""
        head = self.first()
        if isinstance(e, (ContentDelta, ReasoningDelta)) and e.text:
            key = "content" if isinstance(e, ContentDelta) else "reasoning_content"
            self._seen.add(key)
            return head + self._frame(self._chunk({key: e.text}))
        if isinstance(e, ToolCallDelta):
            return head + self._frame(self._chunk(self._tool_delta(e)))
        if isinstance(e, Done):
            r = e.response
            for key, text in (("reasoning_content", r.reasoning), ("content", r.content)):
                if text and key not in self._seen:
                    head += self.event(ContentDelta(text) if key == "content" else ReasoningDelta(text))
            if not self._ids_sent:
                for i, c in enumerate(r.tool_calls):
                    head += self.event(ToolCallDelta(i, c.id, c.name, c.arguments))
            self._finished = True
            last = self._chunk({}, _finish(e.response))
            if e.response.timings is not None:
                last["timings"] = timings_dict(e.response.timings)
            out = head + self._frame(last)
            if self.include_usage:
                out += self._frame({**self._chunk({}), "choices": [], "usage": _usage(e.response.usage)})
            return out
        return head  # ToolCallEnd, empty deltas

    def done(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, status: int, kind: str, message: str) -> bytes:
        """A failure after the stream started. ``code`` is the HTTP status when the kind has no code of
        its own, as llama-server does: corral's own client reads it as the status."""
        body = openai_error(status, message, kind=kind)
        if body["error"]["code"] is None:
            body["error"]["code"] = status
        return self._frame(body)


# -- /v1/completions -----------------------------------------------------------------------------------------
def completion_request_from_openai(body: Any) -> tuple[str, dict[str, Any]]:
    """(prompt, params for Provider.complete); ``model`` is left out of params: the gateway routes on
    it and sets the upstream model itself. Streaming is refused (corral's complete() does not stream)."""
    b = _object(body)
    prompt = b.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise WireError(
            400, "prompt must be a string (arrays of prompts and token arrays are not supported)", param="prompt"
        )
    _common(b)
    _need(b.get("stream") is not True, "stream is not supported on /v1/completions by this gateway", "stream")
    params: dict[str, Any] = {}
    for key, value in (
        ("max_tokens", _positive_int(b, "max_tokens")),
        ("temperature", _number(b, "temperature", 0, 2)),
        ("stop", _stop(b) or None),
        ("seed", _typed(b, "seed", int, "an integer")),
    ):
        if value is not None:
            params[key] = value
    params.update((k, v) for k, v in b.items() if k not in _COMPLETION_FIELDS and k not in params and v is not None)
    return prompt, params


def openai_completion_response(c: Completion, *, model: str, created: int) -> dict[str, Any]:
    """A ``text_completion`` object."""
    finish = c.finish_reason if c.finish_reason in ("stop", "length", "content_filter") else "stop"
    out: dict[str, Any] = {
        "id": "cmpl-" + uuid.uuid4().hex[:24],
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": c.text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(c.usage),
    }
    if c.timings is not None:
        out["timings"] = timings_dict(c.timings)
    return out


# -- /v1/embeddings and /v1/models ---------------------------------------------------------------------------
def embedding_inputs_from_openai(body: Any) -> list[str]:
    """The texts to embed. Also checks ``encoding_format`` ('float' or 'base64': pass it on to
    openai_embeddings_response) and refuses ``dimensions``, which corral cannot pass on."""
    b = _object(body)
    _typed(b, "model", str, "a string")
    fmt = b.get("encoding_format")
    message = f"encoding_format must be 'float' or 'base64', got {fmt!r}"
    _need(fmt in (None, "float", "base64"), message, "encoding_format")
    _need(b.get("dimensions") is None, "dimensions is not supported by this gateway", "dimensions")
    value = b.get("input")
    items = [value] if isinstance(value, str) else value if isinstance(value, list) and value else []
    if items and all(isinstance(x, str) for x in items):
        return list(items)
    tokens = bool(items) and all(_is_int(x) or isinstance(x, list) for x in items)
    _need(not tokens, "input as token arrays is not supported by this gateway; send strings", "input")
    problem = "is required" if value is None else "must be a string or a non-empty array of strings"
    raise WireError(400, f"input {problem}", param="input")


def rerank_request_from_wire(body: Any) -> tuple[str, list[str], int | None, bool]:
    """A /v1/rerank body (llama.cpp's, Jina's and Cohere's shape): query, documents, top_n,
    return_documents. Documents may be strings or ``{"text": ...}`` objects."""
    b = _object(body)
    _typed(b, "model", str, "a string")
    query = b.get("query")
    _need(isinstance(query, str), "query is required and must be a string", "query")
    docs = b.get("documents")
    if not isinstance(docs, list) or not docs:
        raise _bad("documents is required: a non-empty array of strings", "documents")
    texts: list[str] = []
    for i, d in enumerate(docs):
        text = d.get("text") if isinstance(d, Mapping) else d
        if not isinstance(text, str):
            raise _bad(f"documents[{i}] must be a string or an object with a text string", "documents")
        texts.append(text)
    flag = b.get("return_documents", False)
    _need(isinstance(flag, bool), "return_documents must be a boolean", "return_documents")
    return str(query), texts, _positive_int(b, "top_n"), bool(flag)


def rerank_response(r: Reranking, *, model: str, return_documents: bool) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for item in r.results:
        entry: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
        if return_documents:
            entry["document"] = {"text": item.document}
        results.append(entry)
    usage = {"prompt_tokens": r.usage.prompt_tokens, "total_tokens": r.usage.prompt_tokens}
    return {"object": "list", "model": model, "usage": usage, "results": results}


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def openai_embeddings_response(e: Embeddings, *, model: str, encoding_format: str = "float") -> dict[str, Any]:
    """The embeddings list; ``encoding_format="base64"`` (what the OpenAI SDK asks for by default)
    packs each vector as little-endian float32, base64-encoded."""
    pack: Any = _b64 if encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": pack(v)} for i, v in enumerate(e.vectors)],
        "model": model,
        "usage": {"prompt_tokens": e.usage.prompt_tokens, "total_tokens": e.usage.prompt_tokens},
    }


def openai_models(items: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """The model list from (id, owned_by) pairs."""
    data = [{"id": i, "object": "model", "created": created, "owned_by": owner} for i, owner in items]
    return {"object": "list", "data": data}
