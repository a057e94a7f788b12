"""corral's provider-neutral data types: messages, tool calls, usage, responses.

Frozen dataclasses with slots: cheap to build on the hot path, safe to share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from .errors import ConfigurationError

__all__ = [
    "ChatResponse",
    "Completion",
    "Embeddings",
    "GeneratedImage",
    "Health",
    "ImagePart",
    "Message",
    "MessageInput",
    "ModelInfo",
    "RerankResult",
    "Reranking",
    "Role",
    "RunningModel",
    "SlotInfo",
    "TextPart",
    "Timings",
    "ToolCall",
    "Usage",
    "to_messages",
]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
_ROLES = frozenset(("system", "user", "assistant", "tool", "developer"))


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image by URL; ``data:`` URLs carry inline base64 images."""

    url: str
    detail: str | None = None


ContentPart: TypeAlias = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON text the model produced

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (raises ValueError if the model wrote invalid JSON)."""
        return json.loads(self.arguments) if self.arguments.strip() else {}


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, content: str | Sequence[ContentPart]) -> Message:
        return cls("user", content if isinstance(content, str) else tuple(content))

    @classmethod
    def assistant(cls, text: str | None = None, tool_calls: Sequence[ToolCall] = ()) -> Message:
        return cls("assistant", text, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id)

    @property
    def text(self) -> str:
        """The text of the message, image parts left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


MessageInput: TypeAlias = Message | Mapping[str, Any] | str


def _part_from_dict(part: Mapping[str, Any], where: str) -> ContentPart:
    kind = part.get("type")
    if kind == "text":
        return TextPart(str(part.get("text", "")))
    if kind == "image_url":
        img = part.get("image_url")
        url = img.get("url") if isinstance(img, Mapping) else img
        if not isinstance(url, str):
            raise ConfigurationError(f"{where}.image_url.url must be a string")
        return ImagePart(url, img.get("detail") if isinstance(img, Mapping) else None)
    if kind == "image" and isinstance(part.get("source"), Mapping):  # Anthropic shape
        src = part["source"]
        if src.get("type") == "base64":
            return ImagePart(f"data:{src.get('media_type', 'image/png')};base64,{src.get('data', '')}")
        return ImagePart(str(src.get("url", "")))
    raise ConfigurationError(f"{where}.type must be 'text' or 'image_url', got {kind!r}")


def _tool_call_from_dict(tc: Mapping[str, Any], where: str) -> ToolCall:
    fn = tc.get("function")
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise ConfigurationError(f"{where}.function.name is required")
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        args = json.dumps(args)
    return ToolCall(str(tc.get("id", "")), fn["name"], args)


def _message_from_dict(m: Mapping[str, Any], i: int) -> Message:
    where = f"messages[{i}]"
    role = m.get("role")
    if role not in _ROLES:
        raise ConfigurationError(f"{where}.role must be one of system, user, assistant, tool; got {role!r}")
    # "developer" is OpenAI's newer name for the system role.
    checked: Role = "system" if role == "developer" else role
    content = m.get("content")
    parsed: str | tuple[ContentPart, ...] | None
    if content is None or isinstance(content, str):
        parsed = content
    elif isinstance(content, Sequence):
        parts: list[ContentPart] = []
        for j, p in enumerate(content):
            if isinstance(p, str):
                parts.append(TextPart(p))
            elif isinstance(p, Mapping):
                parts.append(_part_from_dict(p, f"{where}.content[{j}]"))
            else:
                raise ConfigurationError(f"{where}.content[{j}] must be an object")
        parsed = tuple(parts)
    else:
        raise ConfigurationError(f"{where}.content must be a string or a list of parts")
    calls = tuple(
        _tool_call_from_dict(tc, f"{where}.tool_calls[{j}]") for j, tc in enumerate(m.get("tool_calls") or ())
    )
    reasoning = m.get("reasoning_content") or m.get("reasoning")
    return Message(
        checked,
        parsed,
        calls,
        m.get("tool_call_id"),
        m.get("name"),
        reasoning if isinstance(reasoning, str) else None,
    )


def to_messages(messages: MessageInput | Iterable[MessageInput]) -> tuple[Message, ...]:
    """Normalise user input: a string, a Message, an OpenAI-style dict, or a list of those."""
    if isinstance(messages, (str, Message, Mapping)):
        messages = [messages]
    out: list[Message] = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, str):
            out.append(Message("user", m))
        elif isinstance(m, Mapping):
            out.append(_message_from_dict(m, i))
        else:
            raise ConfigurationError(f"messages[{i}] must be a dict or a corral.Message, got {type(m).__name__}")
    if not out:
        raise ConfigurationError("messages must not be empty")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    """llama.cpp's own measurements of a request."""

    prompt_tokens: int
    prompt_ms: float
    prompt_per_second: float
    predicted_tokens: int
    predicted_ms: float
    predicted_per_second: float
    cached_tokens: int = 0

    @classmethod
    def from_llamacpp(cls, t: Mapping[str, Any]) -> Timings:
        return cls(
            prompt_tokens=int(t.get("prompt_n", 0)),
            prompt_ms=float(t.get("prompt_ms", 0.0)),
            prompt_per_second=float(t.get("prompt_per_second", 0.0)),
            predicted_tokens=int(t.get("predicted_n", 0)),
            predicted_ms=float(t.get("predicted_ms", 0.0)),
            predicted_per_second=float(t.get("predicted_per_second", 0.0)),
            cached_tokens=int(t.get("cache_n", 0)),
        )


@dataclass(frozen=True, slots=True)
class ChatResponse:
    content: str
    finish_reason: str
    usage: Usage
    model: str = ""
    id: str = ""
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    timings: Timings | None = None
    provider: str = ""
    parsed: Any = None  # structured output, when response_format asked for it
    stop_sequence: str | None = None  # the stop string that ended the answer, when the server says
    #: per-token log probabilities (OpenAI's ``logprobs.content`` items), when asked for
    logprobs: tuple[Mapping[str, Any], ...] | None = None

    @property
    def message(self) -> Message:
        """The reply as a Message, ready to append to the conversation."""
        return Message("assistant", self.content or None, self.tool_calls, reasoning=self.reasoning)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    model: str = ""
    timings: Timings | None = None
    provider: str = ""


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One document's place: ``index`` into the documents given, its relevance ``score``."""

    index: int
    score: float
    document: str


@dataclass(frozen=True, slots=True)
class Reranking:
    """Documents ordered by relevance to the query, best first (``top_n`` of them when asked)."""

    results: list[RerankResult]
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    provider: str = ""


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    provider: str = ""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str = ""
    created: int | None = None
    context_length: int | None = None
    provider: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Health:
    status: Literal["ok", "loading", "error"]
    provider: str = ""
    endpoint: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One generated image: base64 data (``b64_json``) or a URL, as the server chose."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None

    def data(self) -> bytes:
        import base64

        if self.b64_json is None:
            raise ValueError("this image was returned as a URL, not inline data")
        return base64.b64decode(self.b64_json)


@dataclass(frozen=True, slots=True)
class RunningModel:
    """A model a process manager (llama-swap, corral's manager) has loaded."""

    model: str
    state: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SlotInfo:
    id: int
    n_ctx: int
    is_processing: bool
    raw: Mapping[str, Any] = field(default_factory=dict)
