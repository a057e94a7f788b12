"""AsyncClient: the asyncio twin of Client, same names, same behaviour, no hidden threads (the
embedded engine's start, a blocking process spawn, runs in a worker thread).

Generated in shape from client.py; keep the two in step (tests/unit/test_public_api.py checks parity)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from .async_transport import RawJSON, TransportFailure
from .capabilities import Capability
from .client_base import ClientBase, completion_params, embed_inputs, image_params, rerank_inputs
from .config import Settings
from .errors import CorralError, ProviderError, UnsupportedCapability
from .providers.base import (
    UNSET,
    Call,
    ChatRequest,
    HTTPRequest,
    StreamCall,
    build_chat_request,
    needed_capabilities,
)
from .registry import create_provider
from .types import (
    ChatResponse,
    Completion,
    Embeddings,
    GeneratedImage,
    Health,
    MessageInput,
    ModelInfo,
    Reranking,
    RunningModel,
    SlotInfo,
    to_messages,
)

if TYPE_CHECKING:
    import asyncio

    import httpx

    from .async_transport import AsyncTransport, OpenStream
    from .providers.base import Provider
    from .providers.llamacpp import LlamaCppProvider
    from .retry import RetryPolicy
    from .stream import AsyncChatStream

T = TypeVar("T")

_NO_STATE: Any = None  # pass-through streams are not decoded
_wire_module: ModuleType | None = None


def _wire() -> ModuleType:
    """corral.transport (headers, timeouts, errors), imported on the first request: it imports httpx.
    Kept here once loaded; a ``from .transport import ...`` on every request costs µs."""
    global _wire_module
    if _wire_module is None:
        from . import transport

        _wire_module = transport
    return _wire_module


def _content(req: HTTPRequest, wire: ModuleType) -> bytes | None:
    body = req.json
    return body if isinstance(body, RawJSON) else wire.encode_body(req)


__all__ = ["AsyncClient"]


class _Counted:
    """An open stream that ends its replica's in-flight count when it is closed; a connection that
    broke while it was read counts as the replica's failure."""

    __slots__ = ("_broken", "_done", "_stream", "headers", "status")

    def __init__(self, stream: OpenStream, done: Callable[[bool], None]) -> None:
        self._stream, self._done = stream, done
        self.status, self.headers = stream.status, stream.headers
        self._broken = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream.aiter_bytes():
                yield chunk
        except TransportFailure:
            self._broken = True
            raise

    async def aread(self) -> bytes:
        try:
            return await self._stream.aread()
        except TransportFailure:
            self._broken = True
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._done(self._broken)


class AsyncClient(ClientBase):
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
        max_retries: int | None = None,
        config: str | Path | Settings | Mapping[str, Any] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: AsyncTransport | None = None,
    ) -> None:
        super().__init__(
            target,
            provider=provider,
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            config=config,
        )
        from .async_transport import HttpxTransport

        # One transport for every request; a caller-supplied one (the gateway's) is the caller's to close.
        self._transport: AsyncTransport = transport or HttpxTransport(http_client)
        self._own_transport = transport is None
        self._lock: asyncio.Lock | None = None
        self._policies: dict[int, tuple[Provider, RetryPolicy]] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_transport:
            await self._transport.aclose()
        engine, self._engine = self._engine, None
        if engine is not None:
            import asyncio

            from .manager.engine import release_engine

            await asyncio.to_thread(release_engine, engine)

    async def get_provider(self) -> Provider:
        """The primary provider; resolving the zero-setup default happens here, on first use."""
        if self._provider is None:
            if self._lock is None:
                import asyncio

                self._lock = asyncio.Lock()
            async with self._lock:
                if self._provider is None:
                    self._provider = await self._make_provider()
        return self._provider

    async def _make_provider(self) -> Provider:
        import asyncio

        if self.config.type == "zero-setup" and not self._pulled_model():
            probe = self._zero_setup_probe()
            try:
                if (await self._run(probe.health(), 1.0, probe)).status in ("ok", "loading"):
                    return probe
            except CorralError:  # nothing (usable) answers there: the embedded engine it is
                pass
        if self.config.type in ("embedded", "zero-setup"):
            from .manager.engine import acquire_engine

            model, args = await asyncio.to_thread(self._engine_spec)
            self._engine = await asyncio.to_thread(acquire_engine, model, args)
            return create_provider(self._engine_config(self._engine))
        return create_provider(self.config)

    # -- sending --------------------------------------------------------------------------------------------
    async def _run(self, call: Call[T], timeout: Any, provider: Provider) -> T:
        """One HTTP exchange, errors translated."""
        wire = _wire()
        req = call.request
        try:
            response = await self._transport.request(
                req.method,
                req.url,
                content=_content(req, wire),
                headers=wire.request_headers(provider, req),
                timeouts=wire.timeouts_for(provider, timeout),
            )
        except TransportFailure as exc:
            raise wire.failure_error(exc, provider) from exc
        if not call.parse_errors and response.status >= 400:
            wire.check_status(provider, req, response.status, response.body, response.headers)
        return call.parse(response.status, response.body)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], provider: Provider) -> T:
        import asyncio

        cached = self._policies.get(id(provider))
        if cached is not None and cached[0] is provider:
            policy = cached[1]
        else:  # the same for every call to this provider: worked out once (it validates max_retries)
            policy = self._retry_policy(provider)
            self._policies[id(provider)] = (provider, policy)
        loop = asyncio.get_running_loop()
        started = loop.time()
        tries = 0
        while True:
            try:
                return await attempt()
            except CorralError as exc:
                wait = policy.delay(tries, exc, loop.time() - started)
                if wait is None:
                    raise
                await asyncio.sleep(wait)
                tries += 1

    async def _require(self, provider: Provider, needs: Sequence[Capability], timeout: Any) -> None:
        for cap in needs:
            provider.require(cap)
            if cap in provider.live:
                known = provider.live[cap]
            else:
                probe = provider.probe(cap)
                if probe is None:
                    continue
                try:
                    known = provider.live[cap] = await self._run(probe, timeout, provider)
                except ProviderError:  # the server would not say: let the real request decide
                    known = provider.live[cap] = True
            if not known:
                raise UnsupportedCapability(provider.name, str(cap), "the server reports it is not enabled")

    async def _execute(
        self,
        build: Callable[[Provider], Call[T]],
        needs: Sequence[Capability],
        timeout: Any,
        messages: Sequence[Any] = (),
    ) -> T:
        """Run on the primary provider (or a replica the balancer picks by ``messages``), then on the
        other replicas and along the fallback chain when an error allows it."""
        plan = self._plan(messages)
        while True:
            try:
                name = plan.name
                provider = await self.get_provider() if name is None else self._other(name)
                await self._require(provider, needs, timeout)
                call = plan.pinned(build(provider))
                result = await self._retrying(partial(self._run, call, timeout, provider), provider)
            except CorralError as exc:
                plan.ended(exc)
                if not plan.advance(exc):
                    raise
                continue
            except BaseException as exc:  # cancelled: the replica is free again, its health unknown
                plan.ended(exc)
                raise
            plan.ended(None)
            return result

    async def _open_stream(
        self,
        make_call: Callable[[Provider], StreamCall],
        needs: Sequence[Capability],
        timeout: Any,
        messages: Sequence[Any] = (),
    ) -> tuple[Provider, StreamCall, OpenStream]:
        """Open a stream, retrying and falling back only until the response starts: once a byte
        has reached the caller, a failure is the caller's to see."""
        wire = _wire()

        async def open_once(provider: Provider, call: StreamCall) -> OpenStream:
            http = call.request
            headers = {**wire.request_headers(provider, http), "Accept": "text/event-stream"}
            try:
                stream = await self._transport.open_stream(
                    http.method,
                    http.url,
                    content=_content(http, wire),
                    headers=headers,
                    timeouts=wire.timeouts_for(provider, timeout),
                )
            except TransportFailure as exc:
                raise wire.failure_error(exc, provider) from exc
            if stream.status >= 400:
                try:
                    body = await stream.aread()
                except TransportFailure:
                    body = b""
                finally:
                    await stream.aclose()
                wire.check_status(provider, http, stream.status, body, stream.headers)
            return stream

        plan = self._plan(messages)
        while True:
            try:
                name = plan.name
                provider = await self.get_provider() if name is None else self._other(name)
                await self._require(provider, needs, timeout)
                call = plan.pinned(make_call(provider))
                stream = await self._retrying(partial(open_once, provider, call), provider)
            except CorralError as exc:
                plan.ended(exc)
                if not plan.advance(exc):
                    raise
                continue
            except BaseException as exc:
                plan.ended(exc)
                raise
            if self.balancer is not None:  # the replica stays in flight until the stream is closed
                stream = _Counted(stream, plan.release())
            return provider, call, stream

    # -- prepared requests, for gateways: a ChatRequest built from another wire format --------------------------
    async def chat_request(self, req: ChatRequest, *, timeout: Any = UNSET) -> ChatResponse:
        """chat() for an already-built :class:`~corral.providers.base.ChatRequest`."""
        needs = [Capability.CHAT, *needed_capabilities(req)]
        return await self._execute(lambda p: p.chat(req), needs, timeout, req.messages)

    def stream_request(self, req: ChatRequest, *, timeout: Any = UNSET) -> AsyncChatStream:
        """stream() for an already-built :class:`~corral.providers.base.ChatRequest`."""
        from .stream import AsyncChatStream

        needs = [Capability.STREAM, *needed_capabilities(req)]
        return AsyncChatStream(lambda: self._open_stream(lambda p: p.stream_chat(req), needs, timeout, req.messages))

    # -- pass-through, for gateways: the bytes of the provider's own answer, with corral's routing --------
    async def passthrough(
        self,
        build: Callable[[Provider], HTTPRequest],
        needs: Sequence[Capability],
        *,
        timeout: Any = UNSET,
        affinity: Sequence[Any] = (),
    ) -> tuple[Provider, bytes]:
        """Send ``build(provider)`` as it is, with retries and fallbacks; the raw 2xx body back.
        HTTP errors raise corral errors as for any call. ``affinity``: the request's messages, for the
        cache-aware choice of a replica."""

        def call(p: Provider) -> Call[tuple[Provider, bytes]]:
            return Call(build(p), lambda status, raw: (p, raw))

        return await self._execute(call, needs, timeout, affinity)

    async def passthrough_stream(
        self,
        build: Callable[[Provider], HTTPRequest],
        needs: Sequence[Capability],
        *,
        timeout: Any = UNSET,
        affinity: Sequence[Any] = (),
    ) -> tuple[Provider, OpenStream]:
        """Open ``build(provider)`` as a stream, with retries and fallbacks until it starts. The caller
        reads ``aiter_bytes()`` and must ``aclose()`` it (closing early cancels the generation)."""

        def call(p: Provider) -> StreamCall:
            return StreamCall(build(p), lambda: _NO_STATE)

        provider, _, stream = await self._open_stream(call, needs, timeout, affinity)
        return provider, stream

    async def _native(self, capability: Capability, build: Callable[[LlamaCppProvider], Call[T]], timeout: Any) -> T:
        """llama.cpp's own routes: the provider lists the capability only if it has them."""
        return await self._execute(lambda p: build(p), [capability], timeout)  # type: ignore[arg-type]

    # -- replicas ---------------------------------------------------------------------------------------------
    async def poll_replicas(self, *, timeout: float | None = 2.0) -> dict[str, dict[str, Any]]:
        """Ask each replica of this client's model how loaded and healthy it is (llama-server's ``/slots``,
        else its health check) and tell the balancer; then the replicas' state. Cheap: the gateway runs
        it every second in the background, never on a request's path. Without replicas: ``{}``."""
        if self.balancer is None:
            return {}
        for name, provider, call in self._poll_calls():
            try:
                result: Any = await self._run(call, timeout, provider)
            except CorralError as exc:
                result = exc
            self._polled(name, result)
        return self.balancer.snapshot()

    # -- chat -----------------------------------------------------------------------------------------------
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
        """One chat completion. ``response_format`` may be a pydantic model class: ``.parsed`` is then
        an instance of it. ``.provider`` names the provider that answered."""
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
        needs = [Capability.CHAT, *needed_capabilities(req)]
        return await self._execute(lambda p: p.chat(req), needs, timeout, req.messages)

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
        """``async with client.stream(...) as s: async for event in s: ...``. The request is sent on
        entering the ``async with`` block (or at the first iteration)."""
        from .stream import AsyncChatStream

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
        needs = [Capability.STREAM, *needed_capabilities(req)]
        return AsyncChatStream(lambda: self._open_stream(lambda p: p.stream_chat(req), needs, timeout, req.messages))

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
        """Raw text completion of ``prompt`` (llama.cpp ``/completion``; ``/v1/completions`` elsewhere)."""
        params = completion_params(max_tokens, temperature, stop, seed, grammar, extra_body)
        needs = [Capability.COMPLETION] + ([Capability.GRAMMAR] if grammar is not None else [])
        return await self._execute(lambda p: p.complete(prompt, params), needs, timeout)

    async def infill(
        self,
        prefix: str,
        suffix: str = "",
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = UNSET,
    ) -> Completion:
        """The text between ``prefix`` and ``suffix`` (llama.cpp ``/infill``). The model needs FIM
        tokens (code models do); without them the server says so: ``UnsupportedCapability``."""
        params = completion_params(max_tokens, temperature, stop, seed, None, extra_body)
        return await self._native(Capability.INFILL, lambda p: p.infill(prefix, suffix, params), timeout)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        model: str | None = None,
        timeout: float | None = UNSET,
    ) -> Reranking:
        """``documents`` ordered by relevance to ``query``, best first (llama.cpp ``/v1/rerank``, a
        server started with ``--reranking`` and a reranker model)."""
        docs = rerank_inputs(query, documents, top_n)
        return await self._native(Capability.RERANK, lambda p: p.rerank(query, docs, top_n, model), timeout)

    # -- other routes ---------------------------------------------------------------------------------------
    async def embed(
        self, inputs: str | Sequence[str], *, model: str | None = None, timeout: float | None = UNSET
    ) -> Embeddings:
        items = embed_inputs(inputs)
        return await self._execute(lambda p: p.embed(items, model), [Capability.EMBEDDINGS], timeout)

    async def images(
        self,
        prompt: str,
        *,
        model: str | None = None,
        n: int = 1,
        size: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | None = UNSET,
    ) -> list[GeneratedImage]:
        """Generate images (``/v1/images/generations``, base64 by default)."""
        params = image_params(model, n, size, extra_body)
        return await self._execute(lambda p: p.images(prompt, params), [Capability.IMAGES], timeout)

    async def models(self, *, timeout: float | None = UNSET) -> list[ModelInfo]:
        return await self._execute(lambda p: p.models(), [Capability.MODELS], timeout)

    async def health(self, *, timeout: float | None = UNSET) -> Health:
        provider = await self.get_provider()
        return await self._run(provider.health(), timeout, provider)

    async def running(self, *, timeout: float | None = UNSET) -> list[RunningModel]:
        """Models a process manager (llama-swap, a router-mode llama-server) has loaded now."""
        return await self._execute(lambda p: p.running(), [Capability.MANAGEMENT], timeout)

    async def unload(self, model: str | None = None, *, timeout: float | None = UNSET) -> None:
        """Unload one model, or all of them, from a process manager (llama-swap, a router-mode llama-server)."""
        return await self._execute(lambda p: p.unload(model), [Capability.MANAGEMENT], timeout)

    async def load(self, model: str, *, timeout: float | None = UNSET) -> None:
        """Ask a router-mode llama-server to load a model (it loads in the background; see running())."""
        return await self._execute(lambda p: p.load(model), [Capability.MANAGEMENT], timeout)

    async def tokenize(self, text: str, *, add_special: bool = False, timeout: float | None = UNSET) -> list[int]:
        return await self._native(Capability.TOKENIZE, lambda p: p.tokenize(text, add_special=add_special), timeout)

    async def detokenize(self, tokens: Sequence[int], *, timeout: float | None = UNSET) -> str:
        return await self._native(Capability.TOKENIZE, lambda p: p.detokenize(tokens), timeout)

    async def apply_template(
        self,
        messages: MessageInput | Iterable[MessageInput],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = UNSET,
    ) -> str:
        """The prompt the model's chat template makes of ``messages`` (and ``tools``, rendered as the
        template renders them)."""
        msgs = to_messages(messages)
        return await self._native(Capability.TEMPLATES, lambda p: p.apply_template(msgs, tools or ()), timeout)

    async def props(self, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return await self._native(Capability.PROPS, lambda p: p.props(), timeout)

    async def metrics(self, *, timeout: float | None = UNSET) -> dict[str, float]:
        return await self._native(Capability.METRICS, lambda p: p.metrics(), timeout)

    async def slots(self, *, timeout: float | None = UNSET) -> list[SlotInfo]:
        return await self._native(Capability.SLOTS, lambda p: p.slots(), timeout)

    async def save_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return await self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "save", filename), timeout)

    async def restore_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return await self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "restore", filename), timeout)

    async def erase_slot(self, slot_id: int, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return await self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "erase", None), timeout)
