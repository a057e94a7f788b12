"""A /v1/responses request read into corral's ChatRequest (the reverse of OpenAI's Responses API).
Pure translation, no I/O. Bad input raises :class:`~corral.gateway.wire_errors.WireError` (400)
naming the field as OpenAI does (``input[2].content[0].type``).

Two kinds of refusal:

* malformed input (a wrong type, a missing field) is refused whatever the backend;
* what is valid but cannot be translated onto a chat API (``previous_response_id`` and other stored
  state, file references, a forced hosted tool) raises :class:`Untranslatable`: a backend that speaks
  the Responses API itself (OpenAI) still gets the request as sent; any other is refused with it.

How items become chat messages:

* ``instructions`` and the system/developer messages before the first other item become one system
  message; later ones stay system messages where they are. Consecutive user messages are joined into
  one (many chat templates insist on alternating turns); text parts are joined by a blank line.
* An assistant message, the ``function_call``/``custom_tool_call`` items after it and the ``reasoning``
  items before it become one assistant message (text, tool calls, reasoning).
* ``function_call_output``/``custom_tool_call_output`` become tool messages; images in an output go in
  a user message right after the tool messages.
* Function tools become chat tools; a ``namespace``'s tools are named ``<namespace>__<name>``; a
  ``custom`` (freeform) tool becomes a function with one string parameter ``input``. Hosted tools
  (``web_search``, ``file_search``, …) cannot run here: they are left out, and named in the
  ``x-corral-tools-ignored`` header; forcing one with ``tool_choice`` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import ConfigurationError
from ...providers.base import ChatRequest, build_chat_request
from ...types import ContentPart, ImagePart, Message, TextPart, ToolCall
from ..openai.fields import bad, need, number, positive_int, typed
from ..wire_errors import WireError, config_error

__all__ = ["ResponsesRequest", "ToolName", "Untranslatable", "chat_name", "responses_request"]

#: fields of the Responses API that need state corral does not keep
_STATEFUL = ("previous_response_id", "conversation", "prompt")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
#: tools the provider runs itself (OpenAI's hosted tools): nothing here can run them
_HOSTED = frozenset(
    {
        "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
        "file_search", "code_interpreter", "image_generation", "computer_use_preview", "computer_use",
        "mcp", "tool_search", "local_shell", "shell", "apply_patch",
    }
)  # fmt: skip
_NAMESPACE_SEP = "__"
_CUSTOM_PARAMS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
    "additionalProperties": False,
}


class Untranslatable(WireError):
    """Valid for the Responses API, but not translatable onto a chat API."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(400, message, param=param)


@dataclass(frozen=True, slots=True)
class ToolName:
    """How the client named a tool that corral offers the model under a chat function name."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


def chat_name(name: str, namespace: str | None) -> str:
    return f"{namespace}{_NAMESPACE_SEP}{name}" if namespace else name


@dataclass(slots=True)
class ResponsesRequest:
    """A /v1/responses body as corral reads it: the chat request, and what the answer needs."""

    req: ChatRequest
    stream: bool
    tools: dict[str, ToolName] = field(default_factory=dict)  # chat function name -> the client's tool
    parallel_tool_calls: bool | None = None
    ignored_tools: tuple[str, ...] = ()


# -- tools ---------------------------------------------------------------------------------------------------
def _function(tool: Mapping[str, Any], at: str, namespace: str | None) -> tuple[dict[str, Any], ToolName]:
    name = tool.get("name")
    if not (isinstance(name, str) and name):
        raise bad(f"{at}.name must be a non-empty string", f"{at}.name")
    desc = typed(tool, "description", str, "a string")
    kind = tool.get("type")
    if kind == "custom":
        fmt = tool.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
            syntax, definition = fmt.get("syntax", "lark"), fmt.get("definition", "")
            desc = f"{desc or ''}\n\nThe input must match this {syntax} grammar:\n{definition}".strip()
        params: Any = _CUSTOM_PARAMS
    else:
        params = tool.get("parameters")
        ok = params is None or isinstance(params, Mapping)
        need(ok, f"{at}.parameters must be a JSON schema object", f"{at}.parameters")
        params = dict(params) if params is not None else {"type": "object", "properties": {}}
    fn: dict[str, Any] = {"name": chat_name(name, namespace), "parameters": params}
    if desc:
        fn["description"] = desc
    return {"type": "function", "function": fn}, ToolName("custom" if kind == "custom" else "function", name, namespace)


def _tools(value: Any) -> tuple[list[dict[str, Any]], dict[str, ToolName], list[str]]:
    need(value is None or isinstance(value, list), "tools must be an array of tools", "tools")
    tools: list[dict[str, Any]] = []
    names: dict[str, ToolName] = {}
    ignored: list[str] = []

    def add(tool: Mapping[str, Any], at: str, namespace: str | None) -> None:
        chat_tool, name = _function(tool, at, namespace)
        key = chat_tool["function"]["name"]
        need(key not in names, f"{at}.name: a tool named {key!r} is already given", f"{at}.name")
        names[key] = name
        tools.append(chat_tool)

    for i, tool in enumerate(value or ()):
        at = f"tools[{i}]"
        need(isinstance(tool, Mapping), f"{at} must be an object", at)
        kind = tool.get("type")
        if kind in ("function", "custom"):
            add(tool, at, None)
        elif kind == "namespace":
            ns = tool.get("name")
            need(isinstance(ns, str) and bool(ns), f"{at}.name must be a non-empty string", f"{at}.name")
            inner = tool.get("tools")
            need(isinstance(inner, list), f"{at}.tools must be an array of tools", f"{at}.tools")
            for j, sub in enumerate(inner):
                where = f"{at}.tools[{j}]"
                ok = isinstance(sub, Mapping) and sub.get("type") in ("function", "custom")
                need(ok, f"{where} must be a function or custom tool", f"{where}.type")
                add(sub, where, ns)
        elif isinstance(kind, str) and (kind in _HOSTED or kind.startswith(("web_search", "computer_use"))):
            ignored.append(kind)
        else:
            raise bad(f"{at}.type {kind!r} is not a tool type this gateway knows", f"{at}.type")
    return tools, names, ignored


def _find(names: Mapping[str, ToolName], kind: Any, name: Any, namespace: Any = None) -> str | None:
    for key, tool in names.items():
        if tool.kind == kind and tool.name == name and (namespace is None or tool.namespace == namespace):
            return key
    return None


def _tool_choice(value: Any, tools: list[dict[str, Any]], names: Mapping[str, ToolName]) -> tuple[Any, list[Any]]:
    """The chat tool_choice, and the tools offered (``allowed_tools`` narrows them)."""
    if value is None or value in ("auto", "none", "required"):
        if value == "required":
            need(bool(tools), "tool_choice 'required' needs function tools", "tool_choice")
        return (value if tools else None), tools
    need(isinstance(value, Mapping), "tool_choice must be 'none', 'auto', 'required' or an object", "tool_choice")
    kind = value.get("type")
    if kind in ("function", "custom"):
        key = _find(names, kind, value.get("name"), value.get("namespace"))
        need(key is not None, f"tool_choice.name must name one of the {kind} tools", "tool_choice.name")
        return {"type": "function", "function": {"name": key}}, tools
    if kind == "allowed_tools":
        mode, allowed = value.get("mode", "auto"), value.get("tools")
        need(mode in ("auto", "required"), "tool_choice.mode must be 'auto' or 'required'", "tool_choice.mode")
        need(isinstance(allowed, list), "tool_choice.tools must be an array", "tool_choice.tools")
        keys = set()
        for j, t in enumerate(allowed):
            key = _find(names, t.get("type"), t.get("name")) if isinstance(t, Mapping) else None
            if key is None and not (isinstance(t, Mapping) and t.get("type") in _HOSTED):
                raise bad(f"tool_choice.tools[{j}] must name one of the tools", f"tool_choice.tools[{j}]")
            keys.add(key)
        narrowed = [t for t in tools if t["function"]["name"] in keys]
        need(bool(narrowed) or mode == "auto", "tool_choice allows no function tool", "tool_choice.tools")
        return (mode if narrowed else None), narrowed
    if isinstance(kind, str) and (kind in _HOSTED or kind.startswith(("web_search", "computer_use"))):
        raise Untranslatable(f"tool_choice {kind!r} forces a hosted tool, which this backend cannot run", "tool_choice")
    raise bad(f"tool_choice.type {kind!r} is not known", "tool_choice.type")


# -- input items ---------------------------------------------------------------------------------------------
def _text(part: Mapping[str, Any], key: str, at: str) -> str:
    v = part.get(key)
    if not isinstance(v, str):
        raise bad(f"{at}.{key} must be a string", f"{at}.{key}")
    return v


def _image(part: Mapping[str, Any], at: str) -> ImagePart:
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise Untranslatable(f"{at}.file_id: files stored with OpenAI cannot be read here; send image_url", at)
    if not (isinstance(url, str) and url):
        raise bad(f"{at}.image_url must be a URL or a data: URL", f"{at}.image_url")
    detail = part.get("detail")
    return ImagePart(url, detail if isinstance(detail, str) and detail != "auto" else None)


def _user_parts(content: Any, at: str, *, images: bool = True) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)] if content else []
    need(isinstance(content, list), f"{at} must be a string or an array of content parts", at)
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        where = f"{at}[{j}]"
        need(isinstance(part, Mapping), f"{where} must be an object", where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            text = _text(part, "text", where)
            parts += [TextPart(text)] if text else []
        elif kind == "input_image" and images:
            parts.append(_image(part, where))
        elif kind == "input_file":
            raise Untranslatable(f"{where}: input_file is not supported on this backend; send the text", where)
        else:
            raise bad(f"{where}.type must be 'input_text' or 'input_image', got {kind!r}", f"{where}.type")
    return parts


def _joined(parts: list[ContentPart]) -> str | tuple[ContentPart, ...]:
    if all(isinstance(p, TextPart) for p in parts):
        return "\n\n".join(p.text for p in parts if isinstance(p, TextPart))
    return tuple(parts)


def _assistant_text(content: Any, at: str) -> str:
    if isinstance(content, str):
        return content
    need(isinstance(content, list), f"{at} must be a string or an array of content parts", at)
    texts = []
    for j, part in enumerate(content):
        where = f"{at}[{j}]"
        need(isinstance(part, Mapping), f"{where} must be an object", where)
        kind = part.get("type")
        if kind in ("output_text", "input_text", "text"):
            texts.append(_text(part, "text", where))
        elif kind == "refusal":
            texts.append(_text(part, "refusal", where))
        else:
            raise bad(f"{where}.type must be 'output_text' or 'refusal', got {kind!r}", f"{where}.type")
    return "".join(texts)


def _reasoning_text(item: Mapping[str, Any], at: str) -> str:
    texts: dict[str, list[str]] = {"content": [], "summary": []}
    for key in texts:
        parts = item.get(key)
        need(parts is None or isinstance(parts, list), f"{at}.{key} must be an array", f"{at}.{key}")
        for j, part in enumerate(parts or ()):
            need(isinstance(part, Mapping), f"{at}.{key}[{j}] must be an object", f"{at}.{key}[{j}]")
            texts[key].append(_text(part, "text", f"{at}.{key}[{j}]"))
    # The full reasoning when the client has it, else its summary.
    return "".join(texts["content"]) or "\n\n".join(texts["summary"])


def _output_text(value: Any, at: str) -> tuple[str, list[ImagePart]]:
    if isinstance(value, str):
        return value, []
    parts = _user_parts(value, at)
    text = "\n\n".join(p.text for p in parts if isinstance(p, TextPart))
    return text, [p for p in parts if isinstance(p, ImagePart)]


class _Conversation:
    """Builds the chat messages, item by item."""

    def __init__(self, instructions: str | None) -> None:
        self.messages: list[Message] = []
        self._system: list[str] = [instructions] if instructions else []
        self._leading = True  # still before the first non-system item
        self._text: list[str] = []  # the assistant turn being built
        self._calls: list[ToolCall] = []
        self._reasoning: list[str] = []
        self._images: list[ImagePart] = []  # from tool outputs, for a user message after them

    def _flush_system(self) -> None:
        if self._leading:
            self._leading = False
            if self._system:
                self.messages.append(Message("system", "\n\n".join(self._system)))

    def _flush_assistant(self) -> None:
        if self._text or self._calls:
            text = "".join(self._text) or None
            self.messages.append(
                Message("assistant", text, tuple(self._calls), reasoning="".join(self._reasoning) or None)
            )
            self._text, self._calls, self._reasoning = [], [], []

    def _flush_images(self) -> None:
        if self._images:
            self._user(list(self._images))
            self._images = []

    def _user(self, parts: list[ContentPart]) -> None:
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "user":  # join consecutive user turns
            before = [TextPart(last.content)] if isinstance(last.content, str) else list(last.content or ())
            parts = [p for p in before if not (isinstance(p, TextPart) and not p.text)] + parts
            self.messages[-1] = Message("user", _joined(parts))
        else:
            self.messages.append(Message("user", _joined(parts)))

    def system(self, text: str) -> None:
        if self._leading:
            self._system += [text] if text else []
            return
        self._flush_assistant()
        self._flush_images()
        self.messages.append(Message("system", text))

    def user(self, parts: list[ContentPart]) -> None:
        self._flush_system()
        self._flush_assistant()
        self._flush_images()
        self._user(parts)

    def assistant(self, text: str) -> None:
        self._flush_system()
        self._flush_images()
        if self._calls:  # text after calls starts a new turn
            self._flush_assistant()
        self._text.append(text)

    def call(self, call: ToolCall) -> None:
        self._flush_system()
        self._flush_images()
        self._calls.append(call)

    def reasoning(self, text: str) -> None:
        self._flush_system()
        self._flush_images()
        if self._text or self._calls:  # reasoning precedes the turn it belongs to
            self._flush_assistant()
        self._reasoning += [text] if text else []

    def tool(self, call_id: str, text: str, images: list[ImagePart]) -> None:
        self._flush_system()
        self._flush_assistant()
        self.messages.append(Message("tool", text, tool_call_id=call_id))
        self._images += images

    def done(self) -> list[Message]:
        self._flush_system()
        self._flush_assistant()
        self._flush_images()
        need(bool(self.messages), "input must contain at least one item", "input")
        return self.messages


def _call_id(item: Mapping[str, Any], at: str) -> str:
    call_id = item.get("call_id")
    if not (isinstance(call_id, str) and call_id):
        raise bad(f"{at}.call_id must be a non-empty string", f"{at}.call_id")
    return call_id


def _item(conv: _Conversation, item: Any, at: str) -> None:
    need(isinstance(item, Mapping), f"{at} must be an object", at)
    kind = item.get("type", "message")
    if kind == "message":
        role, content = item.get("role"), item.get("content")
        need(content is not None, f"{at}.content is required", f"{at}.content")
        if role in ("system", "developer"):
            conv.system(_joined_text(_user_parts(content, f"{at}.content", images=False)))
        elif role == "user":
            conv.user(_user_parts(content, f"{at}.content"))
        elif role == "assistant":
            conv.assistant(_assistant_text(content, f"{at}.content"))
        else:
            raise bad(f"{at}.role must be user, assistant, system or developer; got {role!r}", f"{at}.role")
    elif kind == "function_call":
        name, args = item.get("name"), item.get("arguments")
        need(isinstance(name, str) and bool(name), f"{at}.name must be a non-empty string", f"{at}.name")
        need(isinstance(args, str), f"{at}.arguments must be a string of JSON", f"{at}.arguments")
        namespace = typed(item, "namespace", str, "a string")
        conv.call(ToolCall(_call_id(item, at), chat_name(name, namespace), args))
    elif kind == "custom_tool_call":
        name, text = item.get("name"), item.get("input")
        need(isinstance(name, str) and bool(name), f"{at}.name must be a non-empty string", f"{at}.name")
        need(isinstance(text, str), f"{at}.input must be a string", f"{at}.input")
        namespace = typed(item, "namespace", str, "a string")
        args = json.dumps({"input": text}, ensure_ascii=False)
        conv.call(ToolCall(_call_id(item, at), chat_name(name, namespace), args))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        need(item.get("output") is not None, f"{at}.output is required", f"{at}.output")
        text, images = _output_text(item["output"], f"{at}.output")
        conv.tool(_call_id(item, at), text, images)
    elif kind == "reasoning":
        conv.reasoning(_reasoning_text(item, at))
    elif kind == "item_reference":
        raise Untranslatable(f"{at}: item_reference needs stored responses, which this gateway does not keep", at)
    else:
        raise Untranslatable(f"{at}.type {kind!r} is not an item this backend can take", f"{at}.type")


def _joined_text(parts: list[ContentPart]) -> str:
    return "\n\n".join(p.text for p in parts if isinstance(p, TextPart))


def _messages(value: Any, instructions: str | None) -> list[Message]:
    need(value is not None, "input is required", "input")
    conv = _Conversation(instructions)
    if isinstance(value, str):
        conv.user([TextPart(value)])
        return conv.done()
    need(isinstance(value, list), "input must be a string or an array of input items", "input")
    for i, item in enumerate(value):
        _item(conv, item, f"input[{i}]")
    return conv.done()


# -- the rest ------------------------------------------------------------------------------------------------
def _text_format(text: Any) -> dict[str, Any] | None:
    need(text is None or isinstance(text, Mapping), "text must be an object", "text")
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    need(isinstance(fmt, Mapping), "text.format must be an object", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    need(
        kind == "json_schema",
        f"text.format.type must be text, json_object or json_schema, got {kind!r}",
        "text.format.type",
    )
    schema = fmt.get("schema")
    need(isinstance(schema, Mapping), "text.format.schema must be a JSON schema object", "text.format.schema")
    spec: dict[str, Any] = {"name": fmt.get("name") or "output", "schema": dict(schema)}
    if isinstance(fmt.get("strict"), bool):
        spec["strict"] = fmt["strict"]
    return {"type": "json_schema", "json_schema": spec}


def _effort(reasoning: Any) -> str | None:
    need(reasoning is None or isinstance(reasoning, Mapping), "reasoning must be an object", "reasoning")
    effort = (reasoning or {}).get("effort")
    ok = effort is None or effort in _EFFORTS
    need(ok, f"reasoning.effort must be one of {', '.join(_EFFORTS)}; got {effort!r}", "reasoning.effort")
    return effort


def _metadata(value: Any) -> None:
    ok = value is None or (isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()))
    need(ok, "metadata must be an object of string values", "metadata")


def responses_request(body: Any) -> ResponsesRequest:
    """A /v1/responses body as a ChatRequest and what the answer needs. Raises WireError for bad
    input, :class:`Untranslatable` for what only a Responses backend could take."""
    need(isinstance(body, Mapping), "the request body must be a JSON object", None)
    b: Mapping[str, Any] = body
    model = typed(b, "model", str, "a string")
    stream = typed(b, "stream", bool, "a boolean") or False
    instructions = typed(b, "instructions", str, "a string")
    max_tokens = positive_int(b, "max_output_tokens")
    temperature, top_p = number(b, "temperature", 0, 2), number(b, "top_p", 0, 1)
    parallel = typed(b, "parallel_tool_calls", bool, "a boolean")
    _metadata(b.get("metadata"))
    effort = _effort(b.get("reasoning"))
    fmt = _text_format(b.get("text"))
    typed(b, "store", bool, "a boolean")
    tools, names, ignored = _tools(b.get("tools"))
    choice, tools = _tool_choice(b.get("tool_choice"), tools, names)
    if b.get("background") is True:
        raise Untranslatable(
            "background responses need stored responses, which this gateway does not keep", "background"
        )
    for key in _STATEFUL:
        if b.get(key) is not None:
            raise Untranslatable(
                f"{key} needs stored responses, which this gateway does not keep: send the whole conversation "
                "in input (as with store: false)",
                key,
            )
    messages = _messages(b.get("input"), instructions)
    try:
        req = build_chat_request(
            messages,
            model=model or None,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            tools=tools,
            tool_choice=choice,
            response_format=fmt,
            # corral's efforts stop at "high"; OpenAI's newer "xhigh" asks for the most there is
            reasoning_effort="high" if effort == "xhigh" else effort,
            parse_output=False,  # the client parses text.format output itself, as from OpenAI
        )
    except ConfigurationError as exc:
        raise config_error(exc) from None
    return ResponsesRequest(req, stream, names, parallel, tuple(dict.fromkeys(ignored)))
