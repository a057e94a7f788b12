"""The contract between the drivers (which do HTTP) and the providers (which translate)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar

from ..capabilities import Capability, require
from ..config import ProviderConfig, public_url
from ..errors import ConfigurationError, ResponseError
from ..events import StreamEvent
from ..structured import normalize_response_format
from ..types import (
    ChatResponse,
    Completion,
    Embeddings,
    GeneratedImage,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    RunningModel,
    to_messages,
)

T = TypeVar("T")

__all__ = [
    "REASONING_EFFORTS",
    "UNSET",
    "Call",
    "ChatRequest",
    "HTTPRequest",
    "Provider",
    "StreamCall",
    "StreamState",
    "build_chat_request",
    "decode_json",
    "needed_capabilities",
]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "not given": distinct from None, which means "no timeout"

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: Any = None
    response_format: Mapping[str, Any] | None = None  # OpenAI wire form, normalised
    output_type: Any = None  # a pydantic model class to validate into, if given
    grammar: str | None = None
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    #: thinking: None leaves it to the model and server; False turns it off; True asks for it
    thinking: bool | None = None
    thinking_budget: int | None = None  # most tokens to spend thinking (Anthropic's budget_tokens)
    reasoning_effort: str | None = None  # OpenAI's "minimal" | "low" | "medium" | "high"
    logprobs: bool = False
    top_logprobs: int | None = None
    #: False: structured output is returned as the model wrote it, not parsed (a gateway relays it)
    parse_output: bool = True


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    method: Literal["GET", "POST", "DELETE"]
    url: str
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: the route names a model (chat, embeddings…): a 404 there means that model does not exist
    model_route: bool = False


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer. ``parse(status, body)`` is called for 2xx
    answers, and for error statuses too when ``parse_errors`` is set (health checks)."""

    request: HTTPRequest
    parse: Callable[[int, bytes], T]
    parse_errors: bool = False


class StreamState(Protocol):
    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]: ...
    def finish(self) -> ChatResponse: ...


@dataclass(frozen=True, slots=True)
class StreamCall:
    request: HTTPRequest
    new_state: Callable[[], StreamState]
    decoder: Literal["sse", "ndjson", "auto"] = "auto"


def decode_json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        shown = body[:300].decode("utf-8", "replace")
        raise ResponseError(f"{what}: response is not JSON: {shown!r}", raw=shown) from None


class Provider:
    """Base of every provider: holds the config, declares capabilities and error wording."""

    type_name = "base"
    server_label = "server"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.base_url = (config.base_url or "").rstrip("/")
        #: capabilities learned from the server itself (see probe), cached for the provider's life
        self.live: dict[Capability, bool] = {}

    @property
    def endpoint(self) -> str:
        """The base URL as it may be shown (in errors, health, reports): a user:password is left out."""
        return public_url(self.base_url) or self.base_url

    #: the bound on a call when the config sets no timeout (None: unbounded)
    default_deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        value = self.config.options.get("deadline", self.default_deadline)
        return float(value) if value is not None else None

    def require(self, capability: Capability) -> None:
        require(self.name, self.capabilities, capability)

    def headers(self) -> dict[str, str]:
        key = self.config.api_key
        return {"Authorization": f"Bearer {key.get()}"} if key else {}

    def probe(self, capability: Capability) -> Call[bool] | None:
        """A request that tells whether the server really offers ``capability`` (None: no need to
        ask, the static declaration holds). The client runs it once and caches the answer in ``live``."""
        return None

    # Operations; a provider overrides those it has and lists them in ``capabilities``.
    def _lacks(self, capability: Capability) -> NoReturn:
        from ..errors import UnsupportedCapability

        raise UnsupportedCapability(self.name, str(capability))

    def chat(self, req: ChatRequest) -> Call[ChatResponse]:
        self._lacks(Capability.CHAT)

    def stream_chat(self, req: ChatRequest) -> StreamCall:
        self._lacks(Capability.STREAM)

    def complete(self, prompt: str, params: dict[str, Any]) -> Call[Completion]:
        self._lacks(Capability.COMPLETION)

    def embed(self, inputs: Sequence[str], model: str | None) -> Call[Embeddings]:
        self._lacks(Capability.EMBEDDINGS)

    def models(self) -> Call[list[ModelInfo]]:
        self._lacks(Capability.MODELS)

    def health(self) -> Call[Health]:
        self._lacks(Capability.HEALTH)

    def images(self, prompt: str, params: dict[str, Any]) -> Call[list[GeneratedImage]]:
        self._lacks(Capability.IMAGES)

    def running(self) -> Call[list[RunningModel]]:
        self._lacks(Capability.MANAGEMENT)

    def unload(self, model: str | None) -> Call[None]:
        self._lacks(Capability.MANAGEMENT)

    def load(self, model: str) -> Call[None]:
        self._lacks(Capability.MANAGEMENT)

    def unreachable_message(self) -> str:
        return f"{self.server_label} not reachable at {self.endpoint}"

    def timeout_message(self) -> str:
        if self.config.timeout is None and self.deadline is not None:
            return f"{self.server_label} request exceeded its deadline of {self.deadline:g} s"
        return f"{self.server_label} request timed out"


def build_chat_request(
    messages: Any,
    *,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: Any = None,
    response_format: Any = None,
    grammar: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
    thinking: bool | None = None,
    thinking_budget: int | None = None,
    reasoning_effort: str | None = None,
    logprobs: bool = False,
    top_logprobs: int | None = None,
    parse_output: bool = True,
) -> ChatRequest:
    """Validate and normalise what a caller passed to chat()/stream()."""
    check_sampling(max_tokens, temperature, top_p)
    if thinking_budget is not None and (not isinstance(thinking_budget, int) or thinking_budget < 0):
        raise ConfigurationError(f"thinking budget must be a non-negative integer, got {thinking_budget!r}")
    if reasoning_effort is not None and reasoning_effort not in REASONING_EFFORTS:
        raise ConfigurationError(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {reasoning_effort!r}"
        )
    if top_logprobs is not None and (not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20):
        raise ConfigurationError(f"top_logprobs must be an integer from 0 to 20, got {top_logprobs!r}")
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise ConfigurationError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
    wire, output_type = normalize_response_format(response_format)
    if grammar is not None and wire is not None:
        raise ConfigurationError("give either grammar or response_format, not both")
    return ChatRequest(
        messages=to_messages(messages),
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        seed=seed,
        tools=tuple(tools or ()),
        tool_choice=tool_choice,
        response_format=wire,
        output_type=output_type,
        grammar=grammar,
        extra_body=dict(extra_body or {}),
        thinking=thinking,
        thinking_budget=thinking_budget,
        reasoning_effort=reasoning_effort,
        logprobs=bool(logprobs or top_logprobs),
        top_logprobs=top_logprobs,
        parse_output=parse_output,
    )


def check_sampling(max_tokens: Any, temperature: Any, top_p: Any = None) -> None:
    """Reject out-of-range sampling values before anything is sent, naming the field."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ConfigurationError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if temperature is not None and not (number(temperature) and 0 <= temperature <= 2):
        raise ConfigurationError(f"temperature must be a number between 0 and 2, got {temperature!r}")
    if top_p is not None and not (number(top_p) and 0 <= top_p <= 1):
        raise ConfigurationError(f"top_p must be a number between 0 and 1, got {top_p!r}")


def needed_capabilities(req: ChatRequest) -> list[Capability]:
    """What a chat request asks of the provider, beyond plain chat."""
    needs = []
    if req.tools:
        needs.append(Capability.TOOLS)
    if req.response_format is not None:
        needs.append(Capability.STRUCTURED_OUTPUT)
    if req.grammar is not None:
        needs.append(Capability.GRAMMAR)
    if req.logprobs:
        needs.append(Capability.LOGPROBS)
    if any(isinstance(p, ImagePart) for m in req.messages if isinstance(m.content, tuple) for p in m.content):
        needs.append(Capability.VISION)
    return needs
