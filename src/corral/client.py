"""Client: the synchronous facade. Every method builds a provider Call (no I/O) and runs it here."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .capabilities import Capability
from .config import ProviderConfig, Settings
from .errors import ConfigurationError
from .providers.base import UNSET, Call, build_chat_request, check_sampling, needed_capabilities
from .registry import create_provider, resolve
from .types import (
    ChatResponse,
    Completion,
    Embeddings,
    Health,
    MessageInput,
    ModelInfo,
    SlotInfo,
    to_messages,
)

if TYPE_CHECKING:
    import httpx

    from .manager.engine import EngineProcess
    from .providers.base import Provider
    from .providers.llamacpp import LlamaCppProvider
    from .stream import ChatStream

T = TypeVar("T")

__all__ = ["Client"]


class _ClientBase:
    """Resolution shared by Client and AsyncClient: which provider, with which settings (no I/O)."""

    def __init__(
        self,
        target: str | None = None,
        *,
        provider: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | None = UNSET,
        config: str | Path | Settings | Mapping[str, Any] | None = None,
    ) -> None:
        self.config: ProviderConfig = resolve(
            target,
            provider=provider,
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            timeout_given=timeout is not UNSET,
            config=config,
        )
        self._provider: Provider | None = None
        self._engine: EngineProcess | None = None

    def _engine_spec(self) -> tuple[str, tuple[str, ...]]:
        """(GGUF path, engine arguments) for the embedded engine; the bundled model by default."""
        from .manager.engine import DEFAULT_ENGINE_ARGS

        gguf = self.config.options.get("gguf")
        args = self.config.options.get("args")
        if gguf:
            return str(gguf), tuple(str(a) for a in args) if isinstance(args, list) else DEFAULT_ENGINE_ARGS
        from .manager.bundled import bundled_engine_args, bundled_model_path

        return str(bundled_model_path()), bundled_engine_args()

    def _engine_config(self, engine: EngineProcess) -> ProviderConfig:
        from dataclasses import replace

        from .config import Secret

        return replace(
            self.config,
            name=self.config.name if self.config.type == "embedded" else "embedded",
            type="embedded",
            base_url=engine.url,
            api_key=Secret(engine.api_key),
        )

    def _zero_setup_config(self) -> ProviderConfig:
        from dataclasses import replace

        from .config import DEFAULT_LLAMACPP_URL

        return replace(self.config, name="llamacpp", type="llamacpp", base_url=DEFAULT_LLAMACPP_URL)


class Client(_ClientBase):
    """One interface to llama.cpp and cloud LLMs.

    ``Client("llamacpp://127.0.0.1:8080")``, ``Client("name-in-config")``,
    ``Client(provider="openai", base_url=..., api_key=...)``, or ``Client()`` for the
    configured default (zero-setup: a llama-server on 127.0.0.1:8080, else the embedded engine).
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        provider: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | None = UNSET,
        config: str | Path | Settings | Mapping[str, Any] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            target, provider=provider, base_url=base_url, api_key=api_key, model=model, timeout=timeout, config=config
        )
        self._http = http_client
        self._own_http = http_client is None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        http, self._http = self._http, None
        if http is not None and self._own_http:
            http.close()
        engine, self._engine = self._engine, None
        if engine is not None:
            from .manager.engine import release_engine

            release_engine(engine)

    @property
    def provider(self) -> Provider:
        """The provider in use; resolving the zero-setup default happens here, on first use."""
        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    self._provider = self._make_provider()
        return self._provider

    def _make_provider(self) -> Provider:
        if self.config.type == "zero-setup":
            probe = create_provider(self._zero_setup_config())
            try:
                if self._run(probe.health(), 1.0, probe).status in ("ok", "loading"):
                    return probe
            except ConfigurationError:
                raise
            except Exception:  # nothing answers there: fall through to the embedded engine
                pass
        if self.config.type in ("embedded", "zero-setup"):
            from .manager.engine import acquire_engine

            self._engine = acquire_engine(*self._engine_spec())
            return create_provider(self._engine_config(self._engine))
        return create_provider(self.config)

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=None, follow_redirects=False)
        return self._http

    def _run(self, call: Call[T], timeout: Any = UNSET, provider: Provider | None = None) -> T:
        import httpx

        from .transport import check_status, encode_body, http_timeout, request_headers, translate_error

        provider = provider or self._provider or self.provider
        req = call.request
        try:
            response = self._client().request(
                req.method,
                req.url,
                content=encode_body(req),
                headers=request_headers(provider, req),
                timeout=http_timeout(provider, timeout),
            )
        except httpx.HTTPError as exc:
            raise translate_error(exc, provider) from exc
        if not call.parse_errors:
            check_status(provider, response.status_code, response.content, response.headers)
        return call.parse(response.status_code, response.content)

    def _llamacpp(self, capability: Capability) -> LlamaCppProvider:
        provider = self.provider
        provider.require(capability)
        return provider  # type: ignore[return-value]  # require() guarantees the native routes

    # -- chat -----------------------------------------------------------------------------------------------
    def chat(
        self,
        messages: MessageInput | Iterable[MessageInput],
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
        timeout: float | None = UNSET,
    ) -> ChatResponse:
        """One chat completion. ``response_format`` may be a pydantic model class: ``.parsed`` is then
        an instance of it."""
        req = build_chat_request(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            grammar=grammar,
            extra_body=extra_body,
        )
        provider = self.provider
        for cap in (Capability.CHAT, *needed_capabilities(req)):
            provider.require(cap)
        return self._run(provider.chat(req), timeout)

    def stream(
        self,
        messages: MessageInput | Iterable[MessageInput],
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
        timeout: float | None = UNSET,
    ) -> ChatStream:
        """A streamed chat completion: ``with client.stream(...) as s: for event in s: ...``."""
        from .stream import ChatStream
        from .transport import encode_body, http_timeout, request_headers

        req = build_chat_request(
            messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            grammar=grammar,
            extra_body=extra_body,
        )
        provider = self.provider
        for cap in (Capability.STREAM, *needed_capabilities(req)):
            provider.require(cap)
        call = provider.stream_chat(req)
        http = call.request
        headers = {**request_headers(provider, http), "Accept": "text/event-stream"}

        def open_response() -> Any:
            return self._client().stream(
                http.method,
                http.url,
                content=encode_body(http),
                headers=headers,
                timeout=http_timeout(provider, timeout),
            )

        return ChatStream(provider, call, open_response)

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        grammar: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = UNSET,
    ) -> Completion:
        """Raw text completion of ``prompt`` (llama.cpp ``/completion``; ``/v1/completions`` elsewhere)."""
        provider = self.provider
        provider.require(Capability.COMPLETION)
        if grammar is not None:
            provider.require(Capability.GRAMMAR)
        params = _completion_params(max_tokens, temperature, stop, seed, grammar, extra_body)
        return self._run(provider.complete(prompt, params), timeout)

    # -- other routes ---------------------------------------------------------------------------------------
    def embed(
        self, inputs: str | Sequence[str], *, model: str | None = None, timeout: float | None = UNSET
    ) -> Embeddings:
        provider = self.provider
        provider.require(Capability.EMBEDDINGS)
        return self._run(provider.embed(_inputs(inputs), model), timeout)

    def models(self, *, timeout: float | None = UNSET) -> list[ModelInfo]:
        provider = self.provider
        provider.require(Capability.MODELS)
        return self._run(provider.models(), timeout)

    def health(self, *, timeout: float | None = UNSET) -> Health:
        provider = self.provider
        provider.require(Capability.HEALTH)
        return self._run(provider.health(), timeout)

    def tokenize(self, text: str, *, add_special: bool = False, timeout: float | None = UNSET) -> list[int]:
        return self._run(self._llamacpp(Capability.TOKENIZE).tokenize(text, add_special=add_special), timeout)

    def detokenize(self, tokens: Sequence[int], *, timeout: float | None = UNSET) -> str:
        return self._run(self._llamacpp(Capability.TOKENIZE).detokenize(tokens), timeout)

    def apply_template(self, messages: MessageInput | Iterable[MessageInput], *, timeout: float | None = UNSET) -> str:
        return self._run(self._llamacpp(Capability.TEMPLATES).apply_template(to_messages(messages)), timeout)

    def props(self, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._run(self._llamacpp(Capability.PROPS).props(), timeout)

    def metrics(self, *, timeout: float | None = UNSET) -> dict[str, float]:
        return self._run(self._llamacpp(Capability.METRICS).metrics(), timeout)

    def slots(self, *, timeout: float | None = UNSET) -> list[SlotInfo]:
        return self._run(self._llamacpp(Capability.SLOTS).slots(), timeout)

    def save_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._run(self._llamacpp(Capability.SLOTS).slot_action(slot_id, "save", filename), timeout)

    def restore_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._run(self._llamacpp(Capability.SLOTS).slot_action(slot_id, "restore", filename), timeout)

    def erase_slot(self, slot_id: int, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._run(self._llamacpp(Capability.SLOTS).slot_action(slot_id, "erase", None), timeout)


def _inputs(inputs: str | Sequence[str]) -> list[str]:
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if not items:
        raise ConfigurationError("embed() needs at least one input")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigurationError(f"inputs[{i}] must be a string, got {type(item).__name__}")
    return items


def _completion_params(
    max_tokens: int | None,
    temperature: float | None,
    stop: str | Sequence[str] | None,
    seed: int | None,
    grammar: str | None,
    extra_body: Mapping[str, Any] | None,
) -> dict[str, Any]:
    check_sampling(max_tokens, temperature)
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    if stop:
        params["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if seed is not None:
        params["seed"] = seed
    if grammar is not None:
        params["grammar"] = grammar
    params.update(extra_body or {})
    return params
