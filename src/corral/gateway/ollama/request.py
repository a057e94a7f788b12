"""/api/chat and /api/generate bodies -> corral's ChatRequest. Pure translation, no I/O.

* Messages: ``images`` (bare base64, as Ollama takes them) become data-URL image parts; an
  assistant's ``thinking`` is its reasoning; tool-call ``arguments`` are objects (JSON text is taken
  too); a ``tool`` message answers the call it names by ``tool_call_id``, else the last unanswered
  call of its ``tool_name``, else the oldest unanswered one (OpenAI-shaped backends need the id).
* ``format``: "json" or a JSON schema -> corral's structured output, the text relayed as written;
  ``think`` -> the request's thinking fields; ``logprobs``/``top_logprobs`` asked for as given.
* No messages (chat) or no prompt (generate) is Ollama's "load the model" request, with
  ``keep_alive: 0`` its "unload" request: the route answers those itself.
* Generate: ``system`` and ``prompt`` (with ``images``) become a two-message chat; ``raw`` is a raw
  completion and ``suffix`` a fill-in-the-middle request, both answered whole; ``template`` (a Go
  template for Ollama's own renderer) and ``context`` (deprecated token memory) are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from ...errors import ConfigurationError
from ...providers.base import ChatRequest, build_chat_request
from ...types import ContentPart, ImagePart, Message, TextPart, ToolCall
from ..chat import ChatCall
from ..wire_errors import WireError, config_error
from .options import parse_keep_alive, parse_options, parse_think, thinking_fields

__all__ = ["chat_call", "generate_call", "image_url"]

_ROLES = ("system", "user", "assistant", "tool")
# The first bytes of the image formats llama.cpp (stb_image) and the cloud APIs read.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"BM", "image/bmp"),
)  # fmt: skip


def _need(ok: bool, message: str, param: str | None) -> None:
    if not ok:
        raise WireError(400, message, param=param)


def image_url(data: Any, at: str) -> str:
    """An Ollama image (base64, no header) as a data: URL with its media type."""
    _need(isinstance(data, str) and bool(data), f"{at} must be a base64-encoded image", at)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(400, f"{at} is not valid base64", param=at) from None
    kind = next((mime for magic, mime in _MAGIC if raw.startswith(magic)), None)
    if kind is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        kind = "image/webp"
    _need(kind is not None, f"{at} is not a PNG, JPEG, GIF, WEBP or BMP image", at)
    return f"data:{kind};base64,{data}"


def _common(b: Mapping[str, Any]) -> dict[str, Any]:
    """The fields /api/chat and /api/generate share, checked, as ChatCall options."""
    model = b.get("model")
    _need(isinstance(model, str) and bool(model.strip()), "model is required", "model")
    stream = b.get("stream", True)  # Ollama streams unless told not to
    _need(stream is None or isinstance(stream, bool), "stream must be a boolean", "stream")
    logprobs = b.get("logprobs")
    _need(logprobs is None or isinstance(logprobs, bool), "logprobs must be a boolean", "logprobs")
    top = b.get("top_logprobs")
    ok = top is None or (isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= 20)
    _need(ok, f"top_logprobs must be an integer from 0 to 20, got {top!r}", "top_logprobs")
    return {
        "asked": model,
        "stream": stream is not False,
        "opts": parse_options(b.get("options")),
        "think": parse_think(b.get("think")),
        "keep_alive": parse_keep_alive(b.get("keep_alive")),
        "keep_alive_given": b.get("keep_alive"),
        "logprobs": bool(logprobs) or bool(top),
        "top_logprobs": top or None,
        "started": time.perf_counter_ns(),
    }


def _format(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    _need(isinstance(value, Mapping), f"format must be 'json' or a JSON schema object, got {value!r}", "format")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(value)}}


def _arguments(fn: Mapping[str, Any], at: str) -> str:
    args = fn.get("arguments")
    if args is None:
        return "{}"
    if isinstance(args, str):  # some clients send JSON text, as OpenAI does
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = None
    _need(isinstance(args, Mapping), f"{at}.arguments must be an object", f"{at}.arguments")
    return json.dumps(args, ensure_ascii=False)


def _tool_calls(value: Any, i: int, calls_seen: list[ToolCall]) -> tuple[ToolCall, ...]:
    at = f"messages[{i}].tool_calls"
    _need(isinstance(value, list), f"{at} must be an array", at)
    out = []
    for j, tc in enumerate(value):
        fn = tc.get("function") if isinstance(tc, Mapping) else None
        where = f"{at}[{j}].function"
        if not isinstance(fn, Mapping):
            raise WireError(400, f"{where} must be an object", param=where)
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise WireError(400, f"{where}.name must be a non-empty string", param=f"{where}.name")
        given = tc.get("id")
        call_id = given if isinstance(given, str) and given else f"call_{i}_{j}"
        out.append(ToolCall(call_id, name, _arguments(fn, where)))
    calls_seen.extend(out)
    return tuple(out)


def _answered_call(m: Mapping[str, Any], i: int, pending: list[ToolCall]) -> str:
    """The id of the call a tool message answers (removed from ``pending``)."""
    given = m.get("tool_call_id")
    name = m.get("tool_name") or m.get("name")
    match = None
    if isinstance(given, str) and given:
        match = next((c for c in pending if c.id == given), None)
        if match is None:
            return given
    elif isinstance(name, str) and name:
        match = next((c for c in reversed(pending) if c.name == name), None)
    elif pending:
        match = pending[0]
    if match is None:
        return f"call_tool_{i}"
    pending.remove(match)
    return match.id


def _content(m: Mapping[str, Any], role: str, i: int) -> str | tuple[ContentPart, ...]:
    text = m.get("content")
    at = f"messages[{i}].content"
    _need(text is None or isinstance(text, str), f"{at} must be a string", at)
    images = m.get("images")
    if not images:
        return text or ""
    _need(role == "user", f"messages[{i}].images: images are only taken in user messages", f"messages[{i}].images")
    return _with_images(text or "", images, f"messages[{i}].images")


def _with_images(text: str, images: Any, at: str) -> str | tuple[ContentPart, ...]:
    if not images:
        return text
    _need(isinstance(images, list), f"{at} must be an array of base64 images", at)
    parts: list[ContentPart] = [TextPart(text)] if text else []
    parts += [ImagePart(image_url(img, f"{at}[{k}]")) for k, img in enumerate(images)]
    return tuple(parts)


def messages_from_ollama(value: Any) -> list[Message]:
    _need(value is None or isinstance(value, list), "messages must be an array of message objects", "messages")
    out: list[Message] = []
    pending: list[ToolCall] = []  # calls not answered yet
    for i, m in enumerate(value or ()):
        _need(isinstance(m, Mapping), f"messages[{i}] must be an object", f"messages[{i}]")
        role = m.get("role")
        _need(role in _ROLES, f"messages[{i}].role must be one of {', '.join(_ROLES)}; got {role!r}",
              f"messages[{i}].role")  # fmt: skip
        content = _content(m, role, i)
        if role == "assistant":
            calls = _tool_calls(m["tool_calls"], i, pending) if m.get("tool_calls") else ()
            thinking = m.get("thinking")
            at = f"messages[{i}].thinking"
            _need(thinking is None or isinstance(thinking, str), f"{at} must be a string", at)
            out.append(Message("assistant", content or None, calls, reasoning=thinking or None))
        elif role == "tool":
            name = m.get("tool_name")
            out.append(Message("tool", content, tool_call_id=_answered_call(m, i, pending),
                               name=name if isinstance(name, str) and name else None))  # fmt: skip
        else:
            out.append(Message(role, content))
    return out


def _tools(value: Any) -> list[Mapping[str, Any]]:
    _need(value is None or isinstance(value, list), "tools must be an array of tool objects", "tools")
    for i, t in enumerate(value or ()):
        at = f"tools[{i}]"
        _need(isinstance(t, Mapping), f"{at} must be an object", at)
        kind = t.get("type") or "function"
        _need(kind == "function", f"{at}.type must be 'function', got {kind!r}", f"{at}.type")
        fn = t.get("function")
        _need(isinstance(fn, Mapping), f"{at}.function must be an object", f"{at}.function")
        ok = isinstance(fn.get("name"), str) and bool(fn["name"])
        _need(ok, f"{at}.function.name must be a non-empty string", f"{at}.function.name")
        ok = fn.get("parameters") is None or isinstance(fn["parameters"], Mapping)
        _need(ok, f"{at}.function.parameters must be a JSON schema object", f"{at}.function.parameters")
    return [{"type": "function", "function": dict(t["function"])} for t in value or ()]


def _request(messages: list[Message], options: dict[str, Any], b: Mapping[str, Any], tools: Any = None) -> ChatRequest:
    opts = options["opts"]
    fmt = _format(b.get("format"))
    tools = _tools(tools)
    if not messages:  # load/unload: nothing is generated
        return ChatRequest((), model=options["asked"])
    try:
        return build_chat_request(
            messages,
            model=options["asked"],
            max_tokens=opts.max_tokens,
            temperature=opts.temperature,
            top_p=opts.top_p,
            stop=opts.stop,
            seed=opts.seed,
            tools=tools,
            response_format=fmt,
            logprobs=options["logprobs"],
            top_logprobs=options["top_logprobs"],
            parse_output=False,  # the model's text is relayed as written, with its true done_reason
            **thinking_fields(options["think"]),
        )
    except ConfigurationError as exc:
        raise config_error(exc) from None


def _json_object(body: Any) -> Mapping[str, Any]:
    _need(isinstance(body, Mapping), "the request body must be a JSON object", None)
    return body  # type: ignore[no-any-return]


def chat_call(body: Any, raw: bytes) -> ChatCall:
    """An /api/chat body as a ChatCall (its Ollama-only fields in ``options``)."""
    b = _json_object(body)
    options = _common(b)
    messages = messages_from_ollama(b.get("messages"))
    options |= {"kind": "chat", "load_only": not messages}
    return ChatCall(_request(messages, options, b, b.get("tools")), options["stream"], dict(b), raw, options)


def generate_call(body: Any, raw: bytes) -> ChatCall:
    """An /api/generate body as a ChatCall: a chat of ``system`` and ``prompt``, or (``raw``,
    ``suffix``) a completion the route runs itself."""
    b = _json_object(body)
    options = _common(b)
    prompt, system, suffix = b.get("prompt"), b.get("system"), b.get("suffix")
    for key, value in (("prompt", prompt), ("system", system), ("suffix", suffix), ("template", b.get("template"))):
        _need(value is None or isinstance(value, str), f"{key} must be a string", key)
    is_raw = b.get("raw") or False
    _need(isinstance(is_raw, bool), "raw must be a boolean", "raw")
    _need(not b.get("template"), "template is not supported: corral renders prompts with the model's own chat "
          "template; send raw: true with a prompt already in the model's format", "template")  # fmt: skip
    _need(not b.get("context"), "context is not supported (Ollama deprecated it): send the conversation to "
          "/api/chat as messages", "context")  # fmt: skip
    _need(not (is_raw and system), "raw mode does not support system: put it in the prompt", "system")
    completion = bool(prompt) and (is_raw or bool(suffix))
    if completion:
        why = "suffix" if suffix else "raw"
        _need(not b.get("images"), f"images cannot be sent with {why}: only a chat prompt takes images", "images")
        _need(_format(b.get("format")) is None, f"format cannot be combined with {why}", "format")
    options |= {"kind": "generate", "load_only": not prompt, "raw": is_raw, "suffix": suffix or None,
                "prompt": prompt or "", "completion": completion}  # fmt: skip
    messages: list[Message] = []
    if prompt and not completion:
        if system:
            messages.append(Message("system", system))
        messages.append(Message("user", _with_images(prompt, b.get("images"), "images")))
    req = _request(messages, options, b) if not completion else ChatRequest((), model=options["asked"])
    return ChatCall(req, options["stream"], dict(b), raw, options)
