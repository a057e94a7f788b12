"""Client: the synchronous facade. Every method builds a provider Call (no I/O) and runs it here,
with retries for transient failures and the configured fallback chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .capabilities import Capability
from .client_base import ClientBase, completion_params, embed_inputs, image_params, rerank_inputs
from .config import Settings
from .errors import CorralError, ProviderError, UnsupportedCapability
from .providers.base import UNSET, Call, ChatRequest, StreamCall, build_chat_request, needed_capabilities
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
    from contextlib import AbstractContextManager

    import httpx

    from .providers.base import Provider
    from .providers.llamacpp import LlamaCppProvider
    from .stream import ChatStream

T = TypeVar("T")

__all__ = ["Client"]


class _Counted:
    """A stream's context manager that ends its replica's in-flight count on exit."""

    __slots__ = ("_cm", "_done")

    def __init__(self, cm: AbstractContextManager[httpx.Response], done: Callable[[bool], None]) -> None:
        self._cm, self._done = cm, done

    def __enter__(self) -> httpx.Response:
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        import httpx

        try:
            return self._cm.__exit__(*exc)
        finally:
            self._done(isinstance(exc[1], httpx.TransportError))


class Client(ClientBase):
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
        max_retries: int | None = None,
        config: str | Path | Settings | Mapping[str, Any] | None = None,
        http_client: httpx.Client | None = None,
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
        """The primary provider; resolving the zero-setup default happens here, on first use."""
        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    self._provider = self._make_provider()
        return self._provider

    def _make_provider(self) -> Provider:
        if self.config.type == "zero-setup" and not self._pulled_model():
            probe = self._zero_setup_probe()
            try:
                if self._run(probe.health(), 1.0, probe).status in ("ok", "loading"):
                    return probe
            except CorralError:  # nothing (usable) answers there: the embedded engine it is
                pass
        if self.config.type in ("embedded", "zero-setup"):
            from .manager.engine import acquire_engine

            self._engine = acquire_engine(*self._engine_spec())
            return create_provider(self._engine_config(self._engine))
        return create_provider(self.config)

    # -- sending --------------------------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=None, follow_redirects=False)
        return self._http

    def _run(self, call: Call[T], timeout: Any, provider: Provider) -> T:
        """One HTTP exchange, errors translated."""
        import httpx

        from .transport import check_status, encode_body, http_timeout, request_headers, translate_error

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
            check_status(provider, req, response.status_code, response.content, response.headers)
        return call.parse(response.status_code, response.content)

    def _retrying(self, attempt: Callable[[], T], provider: Provider) -> T:
        policy = self._retry_policy(provider)
        started = time.monotonic()
        tries = 0
        while True:
            try:
                return attempt()
            except CorralError as exc:
                wait = policy.delay(tries, exc, time.monotonic() - started)
                if wait is None:
                    raise
                time.sleep(wait)
                tries += 1

    def _require(self, provider: Provider, needs: Sequence[Capability], timeout: Any) -> None:
        for cap in needs:
            provider.require(cap)
            if cap in provider.live:
                known = provider.live[cap]
            else:
                probe = provider.probe(cap)
                if probe is None:
                    continue
                try:
                    known = provider.live[cap] = self._run(probe, timeout, provider)
                except ProviderError:  # the server would not say: let the real request decide
                    known = provider.live[cap] = True
            if not known:
                raise UnsupportedCapability(provider.name, str(cap), "the server reports it is not enabled")

    def _execute(
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
                provider = self.provider if name is None else self._other(name)
                self._require(provider, needs, timeout)
                call = plan.pinned(build(provider))
                result = self._retrying(partial(self._run, call, timeout, provider), provider)
            except CorralError as exc:
                plan.ended(exc)
                if not plan.advance(exc):
                    raise
                continue
            except BaseException as exc:
                plan.ended(exc)
                raise
            plan.ended(None)
            return result

    def _open_stream(
        self, req: ChatRequest, needs: Sequence[Capability], timeout: Any
    ) -> tuple[Provider, StreamCall, AbstractContextManager[httpx.Response], httpx.Response]:
        """Open a stream, retrying and falling back only until the response starts: once a byte
        has reached the caller, a failure is the caller's to see."""
        import httpx

        from .transport import check_status, encode_body, http_timeout, request_headers, translate_error

        def open_once(
            provider: Provider, call: StreamCall
        ) -> tuple[AbstractContextManager[httpx.Response], httpx.Response]:
            http = call.request
            headers = {**request_headers(provider, http), "Accept": "text/event-stream"}
            cm = self._client().stream(
                http.method,
                http.url,
                content=encode_body(http),
                headers=headers,
                timeout=http_timeout(provider, timeout),
            )
            try:
                response = cm.__enter__()
            except httpx.HTTPError as exc:
                raise translate_error(exc, provider) from exc
            if response.status_code >= 400:
                try:
                    body = response.read()
                except httpx.HTTPError:
                    body = b""
                finally:
                    cm.__exit__(None, None, None)
                check_status(provider, http, response.status_code, body, response.headers)
            return cm, response

        plan = self._plan(req.messages)
        while True:
            try:
                name = plan.name
                provider = self.provider if name is None else self._other(name)
                self._require(provider, needs, timeout)
                call = plan.pinned(provider.stream_chat(req))
                cm, response = self._retrying(partial(open_once, provider, call), provider)
            except CorralError as exc:
                plan.ended(exc)
                if not plan.advance(exc):
                    raise
                continue
            except BaseException as exc:
                plan.ended(exc)
                raise
            if self.balancer is not None:  # the replica stays in flight until the stream is closed
                cm = _Counted(cm, plan.release())
            return provider, call, cm, response

    def _native(self, capability: Capability, build: Callable[[LlamaCppProvider], Call[T]], timeout: Any) -> T:
        """llama.cpp's own routes: the provider lists the capability only if it has them."""
        return self._execute(lambda p: build(p), [capability], timeout)  # type: ignore[arg-type]

    # -- replicas ---------------------------------------------------------------------------------------------
    def poll_replicas(self, *, timeout: float | None = 2.0) -> dict[str, dict[str, Any]]:
        """Ask each replica of this client's model how loaded and healthy it is (llama-server's ``/slots``,
        else its health check) and tell the balancer; then the replicas' state. Cheap: the gateway runs
        it every second in the background, never on a request's path. Without replicas: ``{}``."""
        if self.balancer is None:
            return {}
        for name, provider, call in self._poll_calls():
            try:
                result: Any = self._run(call, timeout, provider)
            except CorralError as exc:
                result = exc
            self._polled(name, result)
        return self.balancer.snapshot()

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
        return self._execute(lambda p: p.chat(req), [Capability.CHAT, *needed_capabilities(req)], timeout, req.messages)

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
        """A streamed chat completion: ``with client.stream(...) as s: for event in s: ...``.
        The request is sent on entering the ``with`` block (or at the first iteration)."""
        from .stream import ChatStream

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
        return ChatStream(lambda: self._open_stream(req, needs, timeout))

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
        params = completion_params(max_tokens, temperature, stop, seed, grammar, extra_body)
        needs = [Capability.COMPLETION] + ([Capability.GRAMMAR] if grammar is not None else [])
        return self._execute(lambda p: p.complete(prompt, params), needs, timeout)

    def infill(
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
        return self._native(Capability.INFILL, lambda p: p.infill(prefix, suffix, params), timeout)

    def rerank(
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
        return self._native(Capability.RERANK, lambda p: p.rerank(query, docs, top_n, model), timeout)

    # -- other routes ---------------------------------------------------------------------------------------
    def embed(
        self, inputs: str | Sequence[str], *, model: str | None = None, timeout: float | None = UNSET
    ) -> Embeddings:
        items = embed_inputs(inputs)
        return self._execute(lambda p: p.embed(items, model), [Capability.EMBEDDINGS], timeout)

    def images(
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
        return self._execute(lambda p: p.images(prompt, params), [Capability.IMAGES], timeout)

    def models(self, *, timeout: float | None = UNSET) -> list[ModelInfo]:
        return self._execute(lambda p: p.models(), [Capability.MODELS], timeout)

    def health(self, *, timeout: float | None = UNSET) -> Health:
        return self._run(self.provider.health(), timeout, self.provider)

    def running(self, *, timeout: float | None = UNSET) -> list[RunningModel]:
        """Models a process manager (llama-swap, a router-mode llama-server) has loaded now."""
        return self._execute(lambda p: p.running(), [Capability.MANAGEMENT], timeout)

    def unload(self, model: str | None = None, *, timeout: float | None = UNSET) -> None:
        """Unload one model, or all of them, from a process manager (llama-swap, a router-mode llama-server)."""
        return self._execute(lambda p: p.unload(model), [Capability.MANAGEMENT], timeout)

    def load(self, model: str, *, timeout: float | None = UNSET) -> None:
        """Ask a router-mode llama-server to load a model (it loads in the background; see running())."""
        return self._execute(lambda p: p.load(model), [Capability.MANAGEMENT], timeout)

    def tokenize(self, text: str, *, add_special: bool = False, timeout: float | None = UNSET) -> list[int]:
        return self._native(Capability.TOKENIZE, lambda p: p.tokenize(text, add_special=add_special), timeout)

    def detokenize(self, tokens: Sequence[int], *, timeout: float | None = UNSET) -> str:
        return self._native(Capability.TOKENIZE, lambda p: p.detokenize(tokens), timeout)

    def apply_template(
        self,
        messages: MessageInput | Iterable[MessageInput],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = UNSET,
    ) -> str:
        """The prompt the model's chat template makes of ``messages`` (and ``tools``, rendered as the
        template renders them)."""
        msgs = to_messages(messages)
        return self._native(Capability.TEMPLATES, lambda p: p.apply_template(msgs, tools or ()), timeout)

    def props(self, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._native(Capability.PROPS, lambda p: p.props(), timeout)

    def metrics(self, *, timeout: float | None = UNSET) -> dict[str, float]:
        return self._native(Capability.METRICS, lambda p: p.metrics(), timeout)

    def slots(self, *, timeout: float | None = UNSET) -> list[SlotInfo]:
        return self._native(Capability.SLOTS, lambda p: p.slots(), timeout)

    def save_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "save", filename), timeout)

    def restore_slot(self, slot_id: int, filename: str, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "restore", filename), timeout)

    def erase_slot(self, slot_id: int, *, timeout: float | None = UNSET) -> dict[str, Any]:
        return self._native(Capability.SLOTS, lambda p: p.slot_action(slot_id, "erase", None), timeout)
