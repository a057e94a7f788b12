"""AsyncClient: the asyncio twin of Client, same names, same behaviour, no hidden threads
(the embedded engine's start, a blocking process spawn, runs in a worker thread)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .capabilities import Capability
from .client import _ClientBase, _completion_params, _inputs
from .config import Settings
from .errors import ConfigurationError
from .providers.base import UNSET, Call, build_chat_request, needed_capabilities
from .registry import create_provider
from .types import ChatResponse, Completion, Embeddings, Health, MessageInput, ModelInfo, SlotInfo, to_messages

if TYPE_CHECKING:
    import asyncio

    import httpx

    from .providers.base import Provider, StreamCall
    from .providers.llamacpp import LlamaCppProvider
    from .stream import AsyncChatStream

T = TypeVar("T")

__all__ = ["AsyncClient"]


class AsyncClient(_ClientBase):
    """``async with AsyncClient(...) as c: await c.chat(...)``: see :class:`corral.Client`."""

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            target, provider=provider, base_url=base_url, api_key=api_key, model=model, timeout=timeout, config=config
        )
        self._http = http_client
        self._own_http = http_client is None
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None and self._own_http:
            await http.aclose()
        engine, self._engine = self._engine, None
        if engine is not None:
            import asyncio

            from .manager.engine import release_engine

            await asyncio.to_thread(release_engine, engine)

    async def get_provider(self) -> Provider:
        """The provider in use; resolving the zero-setup default happens here, on first use."""
        if self._provider is None:
            if self._lock is None:
                import asyncio

                self._lock = asyncio.Lock()
            async with self._lock:
                if self._provider is None:
                    self._provider = await self._make_provider()
        return self._provider

    async def _make_provider(self) -> Provider:
        if self.config.type == "zero-setup":
            probe = create_provider(self._zero_setup_config())
            try:
                if (await self._run(probe.health(), 1.0, probe)).status in ("ok", "loading"):
                    return probe
            except ConfigurationError:
                raise
            except Exception:  # nothing answers there: fall through to the embedded engine
                pass
        if self.config.type in ("embedded", "zero-setup"):
            import asyncio

            from .manager.engine import acquire_engine

            model, args = await asyncio.to_thread(self._engine_spec)
            self._engine = await asyncio.to_thread(acquire_engine, model, args)
            return create_provider(self._engine_config(self._engine))
        return create_provider(self.config)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=None, follow_redirects=False)
        return self._http

    async def _run(self, call: Call[T], timeout: Any = UNSET, provider: Provider | None = None) -> T:
        import httpx

        from .transport import check_status, encode_body, http_timeout, request_headers, translate_error

        provider = provider or self._provider or await self.get_provider()
        req = call.request
        try:
            response = await self._client().request(
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

    async def _llamacpp(self, capability: Capability) -> LlamaCppProvider:
        provider = await self.get_provider()
        provider.require(capability)
        return provider  # type: ignore[return-value]  # require() guarantees the native routes

    async def chat(
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
        provider = await self.get_provider()
        for cap in (Capability.CHAT, *needed_capabilities(req)):
            provider.require(cap)
        return await self._run(provider.chat(req), timeout)

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
    ) -> AsyncChatStream:
        """``async with client.stream(...) as s: async for event in s: ...``"""
        from .stream import AsyncChatStream
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
        needs = (Capability.STREAM, *needed_capabilities(req))
        if self._provider is not None:  # fail at the call site when we already know
            for cap in needs:
                self._provider.require(cap)

        async def prepare() -> tuple[Provider, StreamCall, Callable[[], Any]]:
            provider = await self.get_provider()
            for cap in needs:
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

            return provider, call, open_response

        return AsyncChatStream(prepare)

    async def complete(
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
        provider = await self.get_provider()
        provider.require(Capability.COMPLETION)
        if grammar is not None:
            provider.require(Capability.GRAMMAR)
        params = _completion_params(max_tokens, temperature, stop, seed, grammar, extra_body)
        return await self._run(provider.complete(prompt, params), timeout)

    async def embed(
        self, inputs: str | Sequence[str], *, model: str | None = None, timeout: float | None = UNSET
    ) -> Embeddings:
        provider = await self.get_provider()
        provider.require(Capability.EMBEDDINGS)
        return await self._run(provider.embed(_inputs(inputs), model), timeout)

    async def models(self, *, timeout: float | None = UNSET) -> list[ModelInfo]:
        provider = await self.get_provider()
        provider.require(Capability.MODELS)
        return await self._run(provider.models(), timeout)

    async def health(self, *, timeout: float | None = UNSET) -> Health:
        provider = await self.get_provider()
        provider.require(Capability.HEALTH)
        return await self._run(provider.health(), timeout)

    async def tokenize(self, text: str, *, add_special: bool = False, timeout: float | None = UNSET) -> list[int]:
        return await self._run(
            (await self._llamacpp(Capability.TOKENIZE)).tokenize(text, add_special=add_special), timeout
        )

    async def detokenize(self, tokens: Sequence[int], *, timeout: float | None = UNSET) -> str:
        return await self._run((await self._llamacpp(Capability.TOKENIZE)).detokenize(tokens), timeout)

    async def apply_template(
        self, messages: MessageInput | Iterable[MessageInput], *, timeout: float | None = UNSET
    ) -> str:
        provider = await self._llamacpp(Capability.TEMPLATES)
        return await self._run(provider.apply_template(to_messages(messages)), timeout)

    async def props(self, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return await self._run((await self._llamacpp(Capability.PROPS)).props(), timeout)

    async def metrics(self, *, timeout: float | None = UNSET) -> dict[str, float]:
        return await self._run((await self._llamacpp(Capability.METRICS)).metrics(), timeout)

    async def slots(self, *, timeout: float | None = UNSET) -> list[SlotInfo]:
        return await self._run((await self._llamacpp(Capability.SLOTS)).slots(), timeout)

    async def save_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        provider = await self._llamacpp(Capability.SLOTS)
        return await self._run(provider.slot_action(slot_id, "save", filename), timeout)

    async def restore_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        provider = await self._llamacpp(Capability.SLOTS)
        return await self._run(provider.slot_action(slot_id, "restore", filename), timeout)

    async def erase_slot(self, slot_id: int, *, timeout: float | None = UNSET) -> dict[str, Any]:
        provider = await self._llamacpp(Capability.SLOTS)
        return await self._run(provider.slot_action(slot_id, "erase", None), timeout)
